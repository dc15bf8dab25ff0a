"""The trained zoo models: toy-induction's circuit is found by EAP; toy-ioi solves its task."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

import edgewise as ew
from edgewise.models import ZOO_DIR, load_model
from edgewise.tasks import list_tasks, load_task


def accuracy_and_logit_diff(model, pairs):
    accs, diffs = [], []
    for batch in pairs.batches(64):
        with torch.no_grad():
            last = model(batch.clean)[torch.arange(len(batch)), batch.last]
        accs.append(last.argmax(-1) == batch.answer)
        diffs.append(last.gather(1, batch.answer[:, None])[:, 0] - last.gather(1, batch.wrong_answer[:, None])[:, 0])
    return torch.cat(accs).float().mean().item(), torch.cat(diffs).mean().item()


@pytest.fixture(scope="module")
def induction():
    return load_task("toy-induction", model=load_model("toy-induction", device="cpu"))


def test_induction_solves_task(induction):
    acc, ld = accuracy_and_logit_diff(induction.hooked_model, induction.pairs)
    assert acc >= 0.85 and ld > 3


def test_induction_circuit_is_stated(induction):
    c = induction.circuit
    assert len(c) == 7 and any(e.startswith("a0.") and e.endswith("<k>") and "->a1." in e for e in c)
    model = induction.hooked_model
    assert model.cfg.attn_only and model.cfg.n_layers == 2


def edge_rank(res, edge):
    order = res.scores.abs().argsort(descending=True).tolist()
    return [res.edges[i] for i in order].index(edge) + 1


def test_eap_ranks_prev_token_to_induction_key_edge_on_top(induction):
    """The pairs corrupt only the earlier occurrence of the last token, which breaks the induction
    head's key match (K-composition) and nothing it copies. Exact patching ranks the key edge 2nd of
    29; EAP ranks it 5th and under-scores it (saturated attention: the gradient at the clean point is
    small), EAP-IG recovers it — see tools/README.md."""
    key_edge = induction.circuit[3]
    assert key_edge.startswith("a0.") and key_edge.endswith("<k>") and "->a1." in key_edge
    model, pairs = induction.hooked_model, induction.pairs
    eap = ew.attribute(model, pairs, method="eap", metric="logit_diff")
    assert edge_rank(eap, key_edge) <= 5, edge_rank(eap, key_edge)
    # a K-composition edge out of the previous-token head is among EAP's top 3
    top3 = [eap.edges[i] for i in eap.scores.abs().argsort(descending=True)[:3].tolist()]
    assert any(e.startswith(key_edge.split("->")[0] + "->a1.") and e.endswith("<k>") for e in top3), top3
    ig = ew.attribute(model, pairs, method="eap-ig-inputs", metric="logit_diff")
    assert edge_rank(ig, key_edge) <= 3


@pytest.fixture(scope="module")
def ioi_model():
    return load_model("toy-ioi", device="cpu")


def test_ioi_tokenizer_is_word_level(ioi_model):
    assert ioi_model.to_single_token(" Mary") == ioi_model.to_single_token("Mary")
    toks = ioi_model.to_tokens("When Mary and John went to the store, John gave a drink to", prepend_bos=False)
    assert toks.shape[1] == 14
    assert not ioi_model.cfg.default_prepend_bos


def test_ioi_solves_task(ioi_model):
    task = load_task("toy-ioi", model=ioi_model)
    assert task.metric == "logit_diff" and task.circuit is None
    acc, ld = accuracy_and_logit_diff(ioi_model, task.pairs)
    assert acc >= 0.9 and ld > 2


def test_ioi_corrupted_replaces_repeated_name(ioi_model):
    task = load_task("toy-ioi", model=ioi_model)
    for rec in task.pairs.records[:20]:
        clean, corrupted = rec["clean"].split(), rec["corrupted"].split()
        differ = [i for i, (a, b) in enumerate(zip(clean, corrupted)) if a != b]
        assert len(clean) == len(corrupted) and len(differ) == 1
        assert clean[differ[0]] == rec["wrong_answer"].strip()  # the repeated name, S2


def test_list_tasks():
    tasks = {t["name"]: t for t in list_tasks()}
    assert {"tracr-reverse", "tracr-proportion", "toy-induction", "toy-ioi"} <= set(tasks)
    assert tasks["tracr-reverse"]["n_pairs"] == 243 and tasks["tracr-reverse"]["has_circuit"]
    assert tasks["toy-ioi"]["metric"] == "logit_diff" and not tasks["toy-ioi"]["has_circuit"]


def test_unknown_task_names_the_bundled_ones():
    with pytest.raises(ValueError, match="tracr-reverse"):
        load_task("no-such-task")


def test_zoo_files_are_small():
    for f in ZOO_DIR.rglob("*"):
        if f.is_file():
            assert f.stat().st_size < 10 * 2**20, f
