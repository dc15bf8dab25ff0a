"""ACDC baseline: the threshold rule, agreement with circuit evaluation, and what it finds on tracr."""
import pytest
import torch
from conftest import random_pairs, tiny_model

import edgewise as ew
from edgewise.acdc import acdc, acdc_sweep
from edgewise.tasks import load_task


@pytest.fixture(scope="module")
def dead_head_model():
    """A random model whose head a1.h0 writes nothing (W_O = 0): every edge out of it has exactly
    zero effect, and so, once those are gone, has every edge into it."""
    model = tiny_model()
    with torch.no_grad():
        model.blocks[1].attn.W_O[0].zero_()
    return model, random_pairs(model)


def test_tau_zero_keeps_every_edge_that_moves_the_metric(dead_head_model):
    model, pairs = dead_head_model
    g = ew.Graph.from_model(model)
    res = acdc(model, pairs, "logit_diff", tau=0.0)
    dead = {e for e in g.edge_names if "a1.h0" in e}
    assert set(g.edge_names) - set(res.edges) == dead
    kept, tested = res.kept[g.edge_mask], res.tested[g.edge_mask]
    assert (res.scores[kept] > 0).all()  # a random model: every live edge matters a little
    assert (res.scores[tested & ~kept] == 0).all()  # removed at τ = 0 only when nothing moved
    # edges into the dead head go untested: nothing reads its output once its out-edges are gone
    assert {e for e, t in zip(g.edge_names, tested.tolist()) if not t} == {e for e in dead if e.split("->")[1].startswith("a1.h0")}
    assert res.metric_circuit == pytest.approx(res.metric_clean, abs=1e-12)


def test_huge_tau_removes_every_edge(dead_head_model):
    model, pairs = dead_head_model
    res = acdc(model, pairs, "logit_diff", tau=1e9)
    assert res.edges == [] and res.circuit().n_edges == 0
    assert res.metric_circuit == pytest.approx(res.metric_corrupted, abs=1e-10)  # resample: the corrupted run


@pytest.mark.parametrize("ablation", ["resample", "zero", "mean"])
def test_threshold_rule_and_final_metric_match_evaluate(ablation):
    model = tiny_model(seed=3)
    pairs = random_pairs(model, n=8)
    g = ew.Graph.from_model(model)
    full = acdc(model, pairs, "logit_diff", tau=0.0, ablation=ablation)
    tau = 0.05 * abs(full.metric_clean - full.metric_corrupted)
    res = acdc(model, pairs, "logit_diff", tau=tau, ablation=ablation, batch_size=3)
    assert 0 < len(res.edges) < g.n_edges  # a τ that prunes some edges and keeps others
    kept, tested = res.kept[g.edge_mask], res.tested[g.edge_mask]
    assert (res.scores[kept] > tau).all() and (res.scores[tested & ~kept] <= tau).all()
    f = ew.evaluate(model, pairs, res.edges, metric="logit_diff", ablation=ablation)
    assert f.metric_circuit == pytest.approx(res.metric_circuit, abs=1e-9)
    assert f.metric_clean == pytest.approx(res.metric_clean, abs=1e-9)
    assert f.normalized == pytest.approx(res.normalized, abs=1e-8)
    assert res.circuit().edges == res.edges


def test_sweep_scores_are_the_largest_tau_kept(dead_head_model):
    model, pairs = dead_head_model
    g = ew.Graph.from_model(model)
    seen = []
    sweep = acdc_sweep(model, pairs, "logit_diff", taus=[0.3, 0.001, 0.03], progress=seen.append)
    assert sweep.taus == [0.001, 0.03, 0.3]
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    for run in sweep.runs:
        assert run.edges == acdc(model, pairs, "logit_diff", tau=run.tau).edges
    expected = [max([r.tau for r in sweep.runs if e in r.edges], default=0.0) for e in g.edge_names]
    assert sweep.scores.tolist() == expected
    # the dead head's edges are never kept: as a ranking they come last
    truth = torch.tensor(["a1.h0" not in e for e in g.edge_names])
    assert ew.roc_auc(sweep.scores, truth)[2] > 0.5


def test_bad_tau_is_rejected(dead_head_model):
    model, pairs = dead_head_model
    with pytest.raises(ValueError, match="tau"):
        acdc(model, pairs, tau=-1.0)
    with pytest.raises(ValueError, match="tau"):
        acdc_sweep(model, pairs, taus=[])


def _auc(task, scores, key):
    g = ew.Graph.from_model(task.hooked_model)
    return ew.roc_auc(scores, g.mask_from_edges(task.circuits[key])[g.edge_mask])[2]


def test_tracr_proportion_resample_recovers_the_official_circuit():
    """With same-length resampled pairs only the x-detection path differs between clean and
    corrupted; the positional q/k edges of a1.h0 carry identical values, so patching them moves the
    metric by exactly 0 and ACDC drops them even at τ = 0. What it keeps is auto-circuit's official
    circuit, at every τ below the full effect; against the 5-edge weight circuit the AUC is capped at 0.8."""
    task = load_task("tracr-proportion")
    model, pairs = task.hooked_model, task.pairs
    for tau in (0.0, 0.01, 0.3):
        res = acdc(model, pairs, task.metric, tau=tau, batch_size=256)
        assert sorted(res.edges) == sorted(task.circuits["circuit_official"])
        assert res.normalized == pytest.approx(1.0, abs=1e-5)
    sweep = acdc_sweep(model, pairs, task.metric, batch_size=256)
    assert _auc(task, sweep.scores, "circuit_official") == pytest.approx(1.0)
    assert _auc(task, sweep.scores, "circuit") == pytest.approx(0.8)


def test_tracr_reverse_zero_ablation_misses_the_length_head():
    """Zero ablation makes the constant and positional edges visible, but every pair has the
    maximum length 5, and with the length head (a0.h0) zeroed m0 decodes length 5 at every position
    (checked by hand: on a 3-token input it then reads 5, wrong; on full-length inputs only the BOS
    position changes, which nothing reads). So ACDC drops the length head's edges even at τ = 0 and
    keeps the other 9 edges of the 13-edge weight circuit, nothing outside it."""
    task = load_task("tracr-reverse")
    res = acdc(task.hooked_model, task.pairs, task.metric, tau=0.0, ablation="zero", batch_size=256)
    missing = set(task.circuits["circuit"]) - set(res.edges)
    assert set(res.edges) < set(task.circuits["circuit"])
    assert missing == {"input->a0.h0<q>", "input->a0.h0<k>", "input->a0.h0<v>", "a0.h0->m0"}
