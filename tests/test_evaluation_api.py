"""The evaluation API others build on: curve sizes, connected pruning, MIB's CPR/CMD, per-pair
metrics, the activation-cache budget, and the sums over explicit batches that sharding uses."""
import math

import pytest
import torch
from conftest import random_pairs, tiny_model

import edgewise as ew
from edgewise.activations import source_mean_sums, source_means
from edgewise.evaluate import MIB_FRACTIONS, CircuitEvaluator, curve_ks, log_spaced_ks


def test_curve_ks_holds_every_mib_fraction_and_the_log_spaced_sizes():
    ks = curve_ks(32491)
    assert ks == sorted(set(ks)) and ks[0] == 0 and ks[-1] == 32491
    assert {int(p * 32491) for p in MIB_FRACTIONS} <= set(ks)  # 32, 64, 162, 324, 649, 1624, 3249, 6498, 16245
    assert set(log_spaced_ks(32491)) <= set(ks)
    assert curve_ks(5) == [0, 1, 2, 3, 4, 5]


def test_faithfulness_curve_defaults_to_curve_ks_with_fractions(model, pairs):
    res = ew.attribute(model, pairs)
    curve = ew.faithfulness_curve(model, pairs, res.scores)
    E = res.graph.n_edges
    assert [p["k"] for p in curve] == curve_ks(E)
    assert all(p["fraction"] == p["k"] / E for p in curve)
    assert curve[-1]["normalized"] == pytest.approx(1.0, abs=1e-9) and curve[0]["normalized"] == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------- pruning to input → logits paths
def on_a_path(graph, keep):
    """Edges of `keep` on some input → logits path, by enumerating paths from the input (DFS)."""
    node = lambda dst: dst.split("<")[0]  # noqa: E731
    out = {}
    for e in graph.edges_from_mask(keep):
        s, d = e.split("->")
        out.setdefault(s, []).append((e, node(d)))
    good = set()

    def walk(n, path):
        if n == "logits":
            good.update(path)
            return
        for e, nxt in out.get(n, []):
            walk(nxt, path + [e])

    walk("input", [])
    return good


def test_prune_connected_on_hand_built_masks():
    g = ew.Graph(ew.GraphConfig(n_layers=2, n_heads=2, d_model=8))
    prune = lambda *names: g.edges_from_mask(ew.prune_connected(g, g.mask_from_edges(names)))  # noqa: E731
    chain = ["input->a0.h0<k>", "a0.h0->m1", "m1->logits"]
    assert prune(*chain) == chain
    # a head reached only through its v input still counts; a1.h1 has no way in, a0.h1 no way out
    assert prune("input->a0.h0<v>", "a0.h0->a1.h0<q>", "a1.h0->logits", "a1.h1->logits", "input->a0.h1<q>") == \
        ["input->a0.h0<v>", "a0.h0->a1.h0<q>", "a1.h0->logits"]
    # a cut in the middle removes both halves
    assert prune("input->a0.h0<q>", "a1.h0->logits") == []
    assert prune() == []


def test_prune_connected_equals_path_enumeration_on_random_masks():
    g = ew.Graph.from_model(tiny_model())
    gen = torch.Generator().manual_seed(0)
    for p in (0.02, 0.05, 0.1, 0.3):
        keep = (torch.rand(g.n_sources, g.n_inputs, generator=gen) < p) & g.edge_mask
        pruned = ew.prune_connected(g, keep)
        assert set(g.edges_from_mask(pruned)) == on_a_path(g, keep)
        assert torch.equal(ew.prune_connected(g, pruned), pruned)  # a fixed point


# ---------------------------------------------------------------- MIB
def test_mib_scores_equal_a_hand_computation_from_evaluate_calls():
    model = tiny_model(seed=7, n_layers=2, n_heads=4, d_model=32)  # 173 edges: fractions 0.005 … 1 differ
    pairs = random_pairs(model, n=8)
    graph = ew.Graph.from_model(model)
    scores = ew.attribute(model, pairs).scores
    out = ew.mib_scores(model, pairs, scores, batch_size=3)
    E = graph.n_edges
    by_hand = {}
    for key, order in (("signed", sorted(range(E), key=lambda i: float(scores[i]))),  # most negative first
                       ("abs", sorted(range(E), key=lambda i: -abs(float(scores[i]))))):
        faith = []
        for p in MIB_FRACTIONS:
            top = [graph.edge_names[i] for i in order[:int(p * E)]]
            kept = on_a_path(graph, graph.mask_from_edges(top))
            faith.append(ew.evaluate(model, pairs, sorted(kept)).normalized)
        by_hand[key] = faith
    x = MIB_FRACTIONS
    cpr = sum((x[i + 1] - x[i]) * (by_hand["signed"][i] + by_hand["signed"][i + 1]) / 2 for i in range(9))
    cmd = sum((x[i + 1] - x[i]) * (abs(1 - by_hand["abs"][i]) + abs(1 - by_hand["abs"][i + 1])) / 2 for i in range(9))
    assert out["cpr"] == pytest.approx(cpr, abs=1e-9) and out["cmd"] == pytest.approx(cmd, abs=1e-9)
    assert [p["faithfulness"] for p in out["points"]] == pytest.approx(by_hand["signed"], abs=1e-9)
    assert [p["faithfulness"] for p in out["points_abs"]] == pytest.approx(by_hand["abs"], abs=1e-9)
    assert [p["k"] for p in out["points"]] == [int(p * E) for p in MIB_FRACTIONS]
    assert out["points"][-1]["faithfulness"] == pytest.approx(1.0, abs=1e-9)
    assert by_hand["signed"] != pytest.approx(by_hand["abs"])  # the two rankings differ here
    flipped = ew.mib_scores(model, pairs, -scores, batch_size=3)  # signed order reverses, |score| order does not
    assert flipped["cmd"] == pytest.approx(out["cmd"], abs=1e-12) and flipped["cpr"] != pytest.approx(out["cpr"])


# ---------------------------------------------------------------- per pair, cache budget, sums over batches
def test_per_pair_equals_evaluate_on_each_pair_alone(model, pairs):
    circuit = ew.attribute(model, pairs).circuit(top_k=25)
    ev = CircuitEvaluator(model, pairs, batch_size=4)
    per = ev.per_pair(circuit)
    assert all(v.dtype == torch.float64 and v.shape == (len(pairs),) for v in per.values())
    for i in range(len(pairs)):
        f = ew.evaluate(model, pairs.subset([i]), circuit)
        assert (per["clean"][i], per["corrupted"][i], per["circuit"][i]) == \
            (pytest.approx(f.metric_clean, abs=1e-10), pytest.approx(f.metric_corrupted, abs=1e-10),
             pytest.approx(f.metric_circuit, abs=1e-10))
    assert float(per["circuit"].mean()) == pytest.approx(ev.faithfulness(circuit).metric_circuit, abs=1e-12)


def test_cache_budget_keeps_what_fits_and_recomputes_the_rest(model, pairs):
    res = ew.attribute(model, pairs)
    masks = [res.circuit(top_k=k).in_graph for k in (5, 40)]
    whole = CircuitEvaluator(model, pairs, batch_size=2, cache=True)
    want = whole.metrics(masks)
    one_batch = whole._cached[0].nbytes()
    ev = CircuitEvaluator(model, pairs, batch_size=2, cache=True, cache_bytes=one_batch)  # room for one batch of three
    assert ev.metrics(masks) == pytest.approx(want, abs=1e-12)
    assert ev.n_cached == 1 and whole.n_cached == 3
    calls = []
    handle = model.register_forward_hook(lambda *a: calls.append(1))
    assert ev.metrics(masks) == pytest.approx(want, abs=1e-12)
    handle.remove()
    # cached batch: one stacked patched forward; each other: corrupted + clean + one stacked patched forward
    assert len(calls) == 1 + 2 * 3


def test_sums_over_explicit_batches_add_up_whatever_the_grouping(model, pairs):
    n = len(pairs)
    graph = ew.Graph.from_model(model)
    whole = ew.score_sums(model, pairs, [list(range(n))], method="eap-ig-inputs", ig_steps=3)
    shards = [[[0, 3], [5]], [[1, 2, 4]]]  # two "workers", batches of any size
    parts = [ew.score_sums(model, pairs, chunks, method="eap-ig-inputs", ig_steps=3) for chunks in shards]
    torch.testing.assert_close(parts[0] + parts[1], whole, rtol=1e-10, atol=1e-12)
    res = ew.attribute(model, pairs, method="eap-ig-inputs", ig_steps=3, batch_size=4)
    torch.testing.assert_close(res.matrix, whole / n, rtol=1e-10, atol=1e-12)
    # mean ablation: means over the whole dataset, from sums and counts over shards
    (s0, c0), (s1, c1) = (source_mean_sums(model, graph, pairs, [[0, 1, 2]], "cpu"),
                          source_mean_sums(model, graph, pairs, [[3], [4, 5]], "cpu"))
    means = (s0 + s1) / (c0 + c1)
    torch.testing.assert_close(means, source_means(model, graph, pairs, 6, "cpu", False), rtol=1e-12, atol=1e-12)
    mean_parts = sum(ew.score_sums(model, pairs, chunks, ablation="mean", means=means) for chunks in shards)
    torch.testing.assert_close(mean_parts / n, ew.attribute(model, pairs, ablation="mean").matrix, rtol=1e-10, atol=1e-12)
    # the evaluator's metric sums, the same way
    ev = CircuitEvaluator(model, pairs, batch_size=2)
    mask = res.circuit(top_k=20).in_graph
    full = ev.metric_sums([mask])
    a, b = ev.metric_sums([mask], chunks=[0, 2]), ev.metric_sums([mask], chunks=[1])
    assert a["count"] + b["count"] == full["count"] == n
    for key in ("clean", "corrupted"):
        assert a[key] + b[key] == pytest.approx(full[key], abs=1e-12)
    assert a["circuits"][0] + b["circuits"][0] == pytest.approx(full["circuits"][0], abs=1e-12)


def test_ig_summed_over_steps_equals_scoring_each_step(model, pairs, monkeypatch):
    from edgewise import attribution
    summed = ew.attribute(model, pairs, method="eap-ig-inputs", ig_steps=4).scores
    monkeypatch.setattr(attribution, "ACCUMULATE_BYTES", 0)
    per_step = ew.attribute(model, pairs, method="eap-ig-inputs", ig_steps=4).scores
    torch.testing.assert_close(summed, per_step, rtol=1e-10, atol=1e-13)


# ---------------------------------------------------------------- dtype
def spearman(a, b):
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def test_bf16_scores_accumulate_in_float32_and_track_float32_scores():
    m32 = tiny_model(seed=2, n_layers=3, n_heads=4, d_model=32, dtype=torch.float32)
    m16 = tiny_model(seed=2, n_layers=3, n_heads=4, d_model=32, dtype=torch.float32)
    m16.load_state_dict(m32.state_dict())
    m16 = m16.to(torch.bfloat16)
    pairs = random_pairs(m32, n=16)
    for method in ("eap", "eap-ig-inputs"):
        s32, s16 = (ew.attribute(m, pairs, method=method, batch_size=5).scores for m in (m32, m16))
        assert s16.dtype == torch.float32 and s32.dtype == torch.float32
        assert spearman(s32, s16) >= 0.99, method
        assert not torch.equal(s32, s16)  # really computed in bf16
    f32, f16 = (ew.evaluate(m, pairs, ew.Circuit.from_scores(ew.Graph.from_model(m32), s32, top_k=40)) for m in (m32, m16))
    assert f16.metric_clean == pytest.approx(f32.metric_clean, abs=0.05) and isinstance(f16.metric_clean, float)
    assert not math.isnan(f16.normalized)


def test_float64_models_stay_float64():
    model = tiny_model(dtype=torch.float64)
    assert ew.attribute(model, random_pairs(model)).scores.dtype == torch.float64

