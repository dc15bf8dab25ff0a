"""The bundled tracr models: exact on every input, their task metrics, and the circuits known from the weights."""
import itertools
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

import edgewise as ew
from edgewise.models import ZOO_DIR, load_model
from edgewise.tasks import load_task, weight_circuit


def reverse_ref(seq):
    return list(reversed(seq))


def proportion_ref(seq):
    return [seq[: i + 1].count("x") / (i + 1) for i in range(len(seq))]


def inputs_by_length(values, max_len=5):
    """Every input of each length 1..max_len, as one batch per length (attention is bidirectional,
    so sequences of different lengths must not share a padded batch)."""
    for n in range(1, max_len + 1):
        yield list(itertools.product(values, repeat=n))


@pytest.fixture(scope="module")
def reverse():
    return load_model("tracr-reverse", device="cpu")


@pytest.fixture(scope="module")
def proportion():
    return load_model("tracr-proportion", device="cpu")


def vocab(name):
    return json.loads((ZOO_DIR / name / "vocab.json").read_text())


def encode(v, seqs):
    return torch.tensor([[v["input"]["BOS"]] + [v["input"][s] for s in seq] for seq in seqs])


def test_reverse_is_exact_on_every_input(reverse):
    v = vocab("tracr-reverse")
    dec = {i: tok for tok, i in v["output"].items()}
    n = 0
    for seqs in inputs_by_length(["1", "2", "3"]):
        with torch.no_grad():
            out = reverse(encode(v, seqs))[:, 1:].argmax(-1).tolist()
        for seq, row in zip(seqs, out):
            assert [dec[i] for i in row] == reverse_ref(list(seq)), seq
        n += len(seqs)
    assert n == 3 + 9 + 27 + 81 + 243


def test_proportion_is_exact_on_every_input(proportion):
    v = vocab("tracr-proportion")
    n = 0
    for seqs in inputs_by_length("wxyz"):
        with torch.no_grad():
            out = proportion(encode(v, seqs))[:, 1:, 0]
        ref = torch.tensor([proportion_ref("".join(seq)) for seq in seqs])
        assert torch.allclose(out, ref, atol=1e-4)
        n += len(seqs)
    assert n == 4 + 16 + 64 + 256 + 1024


def test_float64_load_matches(reverse):
    m64 = load_model("tracr-reverse", device="cpu", dtype=torch.float64)
    assert m64.W_E.dtype == torch.float64
    ids = torch.tensor([[3, 0, 1, 2, 2, 0]])
    assert torch.allclose(m64(ids).float(), reverse(ids), atol=1e-4)


@pytest.mark.parametrize("name,n_edges,n_circuit", [("tracr-reverse", 77, 13), ("tracr-proportion", 23, 5)])
def test_weight_circuit_size_and_shipped(name, n_edges, n_circuit):
    model = load_model(name, device="cpu")
    assert ew.Graph.from_model(model).n_edges == n_edges
    circuit = weight_circuit(model)
    assert len(circuit) == n_circuit
    task = load_task(name, model=model)
    assert sorted(task.circuit) == sorted(circuit)
    # the published circuits (ACDC, auto-circuit official) are subsets of the weight circuit
    for key in ("circuit_acdc", "circuit_official"):
        assert set(task.circuits[key]) <= set(circuit), key


def test_weight_circuit_reverse_edges(reverse):
    c = set(weight_circuit(reverse))
    # length (selector width) in a0 + m0, opp_idx in m1, opp_idx-1 in m2, the reversing head a3
    assert {"a0.h0->m0", "m0->m1", "m1->m2", "m2->a3.h0<q>", "input->a3.h0<k>", "input->a3.h0<v>",
            "a3.h0->logits"} <= c
    assert not any(e.startswith(("a1.", "a2.", "m3")) or "a1.h0<" in e or "a2.h0<" in e for e in c)


def test_weight_circuit_proportion_edges(proportion):
    assert sorted(weight_circuit(proportion)) == sorted(
        ["input->m0", "input->a1.h0<q>", "input->a1.h0<k>", "m0->a1.h0<v>", "a1.h0->logits"])


@pytest.mark.parametrize("name", ["tracr-reverse", "tracr-proportion"])
def test_task_metric_separates_clean_and_corrupted(name):
    task = load_task(name)
    assert task.model == name and task.metric in ew.METRICS
    metric = ew.METRICS[task.metric]
    model = task.hooked_model
    batch = next(task.pairs.batches(64))
    clean_logits = model(batch.clean).detach().requires_grad_(True)
    with torch.no_grad():
        corr = metric(model(batch.corrupted), batch)
    m_clean = metric(clean_logits, batch)
    assert (m_clean > corr).all()
    # the gradient at the clean point does not vanish (unlike KL)
    m_clean.sum().backward()
    assert clean_logits.grad.abs().sum() > 0


def test_reverse_metric_value():
    task = load_task("tracr-reverse")
    batch = next(task.pairs.batches(8))
    with torch.no_grad():
        m = ew.METRICS["tracr_reverse"](task.hooked_model(batch.clean), batch)
    # clean run: one unit of logit per position where the clean and corrupted outputs differ
    diff = (batch.clean[:, 1:] != batch.corrupted[:, 1:]).sum(1).to(m.dtype)
    assert torch.allclose(m, diff, atol=1e-3)


@pytest.mark.parametrize("name,capped", [("tracr-reverse", 0.577), ("tracr-proportion", 0.800)])
def test_eap_recovers_official_circuit(name, capped):
    """With resampled same-length pairs EAP ranks auto-circuit's official circuit first (AUC 1);
    against the full weight circuit the AUC is capped: constant/positional edges carry no difference."""
    task = load_task(name)
    g = ew.Graph.from_model(task.hooked_model)
    res = ew.attribute(task.hooked_model, task.pairs, method="eap", metric=task.metric)
    auc = {k: ew.roc_auc(res.scores, g.mask_from_edges(v)[g.edge_mask])[2] for k, v in task.circuits.items()}
    assert auc["circuit_official"] == pytest.approx(1.0)
    assert auc["circuit"] == pytest.approx(capped, abs=0.002)
