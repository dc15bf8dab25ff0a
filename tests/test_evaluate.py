"""Circuit evaluation: patching identities, faithfulness, curve, ROC/AUC, circuit JSON."""
import json
import math

import pytest
import torch
from brute import logit_diff_last
from conftest import random_pairs, tiny_model

import edgewise as ew
from edgewise.evaluate import evaluate_masks, log_spaced_ks


def mean_logit_diff(model, prompts, pairs):
    with torch.no_grad():
        return sum(logit_diff_last(model(torch.tensor([p])), a, w)
                   for p, a, w in zip(prompts, pairs.answer, pairs.wrong_answer)) / len(pairs)


@pytest.mark.parametrize("kw", [{}, {"attn_only": True}, {"parallel": True}, {"attention_dir": "bidirectional"}])
def test_empty_circuit_is_corrupted_run_and_full_circuit_is_clean_run(kw):
    model = tiny_model(**kw)
    pairs = random_pairs(model)
    clean = mean_logit_diff(model, pairs.clean, pairs)
    corrupted = mean_logit_diff(model, pairs.corrupted, pairs)
    assert abs(clean - corrupted) > 1e-3  # the check means something
    g = ew.Graph.from_model(model)
    _, _, (empty, full) = evaluate_masks(
        model, pairs, [torch.zeros_like(g.edge_mask), g.edge_mask], batch_size=4)
    assert empty == pytest.approx(corrupted, abs=1e-10)
    assert full == pytest.approx(clean, abs=1e-10)
    f = ew.evaluate(model, pairs, ew.Circuit.from_edges(model, []), batch_size=4)
    assert (f.metric_clean, f.metric_corrupted) == (pytest.approx(clean, abs=1e-10), pytest.approx(corrupted, abs=1e-10))
    assert f.normalized == pytest.approx(0.0, abs=1e-9)
    assert ew.evaluate(model, pairs, g.edge_names).normalized == pytest.approx(1.0, abs=1e-9)


def test_zero_ablation_of_every_edge_equals_zeroing_every_source(model, pairs):
    """With zero ablation and no edges kept, every input slot sees only the constant biases (b_O):
    the same as a run where every source output is zeroed at its hook."""
    zero = lambda x, hook: torch.zeros_like(x)  # noqa: E731
    hooks = [("blocks.0.hook_resid_pre", zero)] + [(f"blocks.{l}.attn.hook_result", zero) for l in range(3)] \
        + [(f"blocks.{l}.hook_mlp_out", zero) for l in range(3)]
    model.set_use_attn_result(True)
    with torch.no_grad():
        expected = sum(logit_diff_last(model.run_with_hooks(torch.tensor([p]), fwd_hooks=hooks), a, w)
                       for p, a, w in zip(pairs.clean, pairs.answer, pairs.wrong_answer)) / len(pairs)
    f = ew.evaluate(model, pairs, [], ablation="zero")
    assert f.metric_corrupted == pytest.approx(expected, abs=1e-10)
    assert f.metric_circuit == pytest.approx(expected, abs=1e-10)


def test_top_k_circuit_faithfulness_and_curve(model, pairs):
    res = ew.attribute(model, pairs, method="exact")
    curve = ew.faithfulness_curve(model, pairs, res.scores, ks=[0, 5, 20, res.graph.n_edges])
    assert [c["k"] for c in curve] == [0, 5, 20, res.graph.n_edges]
    assert curve[0]["normalized"] == pytest.approx(0.0, abs=1e-9)
    assert curve[-1]["normalized"] == pytest.approx(1.0, abs=1e-9)
    f = ew.evaluate(model, pairs, res.circuit(top_k=20))
    assert f.n_edges == 20 and f.normalized == pytest.approx(curve[2]["normalized"], abs=1e-12)
    # a single edge: the circuit with every edge but one moves the metric by exactly its `exact` score
    top = res.edges[int(res.ranking()[0])]
    one_out = ew.evaluate(model, pairs, [e for e in res.edges if e != top])
    assert one_out.metric_circuit - one_out.metric_clean == pytest.approx(float(res.scores[res.ranking()[0]]), abs=1e-10)


def test_log_spaced_ks():
    ks = log_spaced_ks(32491)
    assert ks[0] == 0 and ks[1] == 1 and ks[-1] == 32491 and ks == sorted(set(ks)) and len(ks) >= 20
    assert log_spaced_ks(3) == [0, 1, 2, 3]


def test_roc_auc_hand_values():
    truth = torch.tensor([1, 1, 0, 0, 0], dtype=torch.bool)
    assert ew.roc_auc(torch.tensor([5.0, 4, 3, 2, 1]), truth)[2] == pytest.approx(1.0)
    assert ew.roc_auc(torch.tensor([1.0, 2, 3, 4, 5]), truth)[2] == pytest.approx(0.0)
    assert ew.roc_auc(torch.tensor([1.0, 1, 1, 1, 1]), truth)[2] == pytest.approx(0.5)  # all tied: chance
    # one positive ties with one negative at the top: that pair counts half → (1·3 − 0.5) / 6
    fpr, tpr, auc = ew.roc_auc(torch.tensor([5.0, 1, 5, 0.5, 0.2]), truth)
    assert auc == pytest.approx((2 * 3 - 0.5 - 1) / 6)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    # signs do not matter (ranking is by |score|), and float noise below the floor is a tie at 0
    assert ew.roc_auc(torch.tensor([-5.0, 4, 0, 1e-12, -1e-13]), truth)[2] == pytest.approx(1.0)
    assert ew.roc_auc(torch.tensor([5.0, 0, 3e-12, 2e-12, 1e-12]), truth)[2] == pytest.approx((3 + 1.5) / 6)
    with pytest.raises(ValueError, match="at least one edge"):
        ew.roc_auc(torch.tensor([1.0, 2]), torch.tensor([True, True]))


def test_circuit_json_round_trip_and_selection(model, pairs):
    res = ew.attribute(model, pairs, method="eap")
    c = res.circuit(top_k=7)
    assert c.n_edges == 7
    order = res.ranking()[:7].tolist()
    assert set(c.edges) == {res.edges[k] for k in order}
    d = json.loads(c.to_json())
    assert d["format"] == "edgewise.circuit/v1" and d["selection"] == {"top_k": 7}
    assert d["cfg"] == {"n_layers": 3, "n_heads": 2, "d_model": 16, "parallel_attn_mlp": False, "attn_only": False}
    assert d["method"] == "eap" and d["metric"] == "logit_diff" and d["dataset"]["n_pairs"] == len(pairs)
    assert sum(e["in_graph"] for e in d["edges"].values()) == 7 and len(d["edges"]) == res.graph.n_edges
    assert d["nodes"]["logits"]["in_graph"] is True
    back = ew.Circuit.from_json(c.to_json())
    assert back.edges == c.edges
    torch.testing.assert_close(back.scores, res.scores.double())
    thr = float(res.scores.abs()[order[6]])
    assert set(res.circuit(min_abs_score=thr).edges) == set(c.edges)
    with pytest.raises(ValueError, match="exactly one"):
        res.circuit()


def test_reads_eap_ig_format():
    """EAP-IG's Graph.to_json: cfg without attn_only, every node and edge listed."""
    g = ew.Graph(ew.GraphConfig(n_layers=2, n_heads=2, d_model=8))
    d = {"cfg": {"n_layers": 2, "n_heads": 2, "parallel_attn_mlp": False, "d_model": 8},
         "nodes": {n: {"in_graph": n in ("input", "a1.h0", "logits")} for n in g.node_names},
         "edges": {e: {"score": float(k), "in_graph": e in ("input->a1.h0<q>", "a1.h0->logits")}
                   for k, e in enumerate(g.edge_names)}}
    c = ew.Circuit.from_json(json.dumps(d))
    assert c.graph.cfg.attn_only is False and c.graph.n_edges == g.n_edges
    assert c.edges == ["input->a1.h0<q>", "a1.h0->logits"]
    assert c.scores[g.edge_position["m1->logits"]] == g.edge_position["m1->logits"]


@pytest.mark.parametrize("text,msg", [("{", "not valid JSON"), ("[]", "must be an object"),
                                      ('{"cfg": {"n_layers": 1, "n_heads": 1}}', "lacks 'edges'"),
                                      ('{"cfg": {"n_heads": 1}, "edges": {}}', "n_layers"),
                                      ('{"cfg": {"n_layers": 1, "n_heads": 1}, "edges": {"a3.h0->logits": {}}}',
                                       "no source node 'a3.h0'")])
def test_bad_circuit_json_is_named(text, msg):
    with pytest.raises(ValueError, match=msg):
        ew.Circuit.from_json(text)


def test_normalized_is_nan_without_a_gap():
    f = ew.Faithfulness(1.0, 1.0, 0.5, 3)
    assert math.isnan(f.normalized) and f.to_dict()["normalized"] is None


@pytest.mark.parametrize("ablation", ["resample", "mean"])
def test_cached_evaluator_gives_the_same_values_with_fewer_passes(model, pairs, ablation):
    from edgewise.evaluate import CircuitEvaluator

    res = ew.attribute(model, pairs, method="eap")
    ev = CircuitEvaluator(model, pairs, ablation=ablation, batch_size=4, cache=True)
    first = ev.faithfulness(res.circuit(top_k=10))
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    second = ev.faithfulness(res.circuit(top_k=10))
    other = ev.faithfulness(res.circuit(top_k=30))
    handle.remove()
    assert len(calls) == 2 * pairs.n_batches(4)  # one patched forward per batch per circuit
    assert second.to_dict() == first.to_dict()
    assert other.to_dict() == pytest.approx(ew.evaluate(model, pairs, res.circuit(top_k=30), ablation=ablation).to_dict(),
                                            rel=1e-12)
