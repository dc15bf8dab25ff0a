"""The scores are right: checked against finite differences, brute-force patching and identities."""
import random

import pytest
import torch
from brute import caches, edge_patched_metric, logit_diff_last, zero_cache
from conftest import random_pairs, tiny_model

import edgewise as ew
from transformer_lens import HookedTransformer, HookedTransformerConfig


def shortformer_model(attn_only=False):
    """Positional embeddings added to q and k after the norm (TransformerLens's attn-only-Nl models)."""
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=12, d_head=8, n_heads=2, d_vocab=11, act_fn="gelu",
                                  attn_only=attn_only, d_mlp=None if attn_only else 64, dtype=torch.float64,
                                  positional_embedding_type="shortformer", seed=0, device="cpu", default_prepend_bos=False)
    model = HookedTransformer(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("b_Q", "b_K", "b_V", "b_O")):
                p.normal_(0, 0.1)
    return model


CONFIGS = {
    "ln-mlp": dict(),
    "attn-only": dict(attn_only=True),
    "parallel": dict(parallel=True),
    "bidirectional": dict(attention_dir="bidirectional"),
    "rms-norm": dict(normalization="RMS"),
    "ln-pre": dict(normalization="LNPre"),
    "no-norm": dict(normalization=None),
}


def pick_edges(graph, n=12, seed=0):
    rng = random.Random(seed)
    return rng.sample(graph.edge_names, min(n, graph.n_edges))


def test_every_edge_matches_finite_differences():
    """All 100 edges of one model, so a swapped q/k/v slot, an off-by-one layer or a wrong row
    cannot hide among unsampled edges."""
    model = tiny_model(seed=4)
    pairs = random_pairs(model, n=3, seed=5)
    res = ew.attribute(model, pairs, method="eap", batch_size=2)
    eps = 1e-4
    per_pair = [caches(model, pairs.clean[i], pairs.corrupted[i]) for i in range(len(pairs))]
    for edge, score in zip(res.edges, res.scores.tolist()):
        fd = 0.0
        for i, (cc, xc) in enumerate(per_pair):
            args = (pairs.answer[i], pairs.wrong_answer[i])
            up = edge_patched_metric(model, pairs.clean[i], xc, cc, edge, eps, *args)
            down = edge_patched_metric(model, pairs.clean[i], xc, cc, edge, -eps, *args)
            fd += (up - down) / (2 * eps) / len(pairs)
        assert score == pytest.approx(fd, rel=1e-6, abs=1e-9), edge


def test_shortformer_eap_matches_finite_differences():
    """q and k read pos_embed after the norm: the x̂ term of the head-input gradient must leave it out."""
    model = shortformer_model()
    pairs = random_pairs(model)
    res = ew.attribute(model, pairs, method="eap", batch_size=4)
    eps = 1e-4
    for edge, score in zip(res.edges, res.scores.tolist()):
        if "<v>" in edge:
            continue
        fd = 0.0
        for i in range(len(pairs)):
            cc, xc = caches(model, pairs.clean[i], pairs.corrupted[i])
            args = (pairs.answer[i], pairs.wrong_answer[i])
            up = edge_patched_metric(model, pairs.clean[i], xc, cc, edge, eps, *args)
            down = edge_patched_metric(model, pairs.clean[i], xc, cc, edge, -eps, *args)
            fd += (up - down) / (2 * eps) / len(pairs)
        assert score == pytest.approx(fd, rel=1e-6, abs=1e-9), edge


def per_pair(pairs, i):
    return pairs.clean[i], pairs.corrupted[i], pairs.answer[i], pairs.wrong_answer[i]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("ablation", ["resample", "zero"])
def test_eap_matches_finite_differences(config, ablation):
    """Moving one edge's source a step ε toward its ablated value changes the metric by ε × score."""
    model = tiny_model(**CONFIGS[config])
    pairs = random_pairs(model)
    res = ew.attribute(model, pairs, method="eap", metric="logit_diff", batch_size=4, ablation=ablation)
    score = dict(zip(res.edges, res.scores.tolist()))
    eps = 1e-4
    for edge in pick_edges(res.graph):
        fd = 0.0
        for i in range(len(pairs)):
            clean, corrupted, a, w = per_pair(pairs, i)
            cc, xc = caches(model, clean, corrupted)
            repl = xc if ablation == "resample" else zero_cache(cc)
            up = edge_patched_metric(model, clean, repl, cc, edge, eps, a, w)
            down = edge_patched_metric(model, clean, repl, cc, edge, -eps, a, w)
            fd += (up - down) / (2 * eps) / len(pairs)
        assert score[edge] == pytest.approx(fd, rel=1e-6, abs=1e-9), edge


def test_mean_ablation_matches_finite_differences(model, pairs):
    """Mean ablation: the replacement is each source's mean over the corrupted prompts' positions."""
    res = ew.attribute(model, pairs, method="eap", batch_size=4, ablation="mean")
    score = dict(zip(res.edges, res.scores.tolist()))
    # the means, computed here from plain caches
    sums, count = {}, 0
    for i in range(len(pairs)):
        _, xc = caches(model, pairs.clean[i], pairs.corrupted[i])
        count += len(pairs.corrupted[i])
        for k, v in xc.items():
            if k == "blocks.0.hook_resid_pre" or k.endswith(("attn.hook_result", "hook_mlp_out")):
                sums[k] = sums.get(k, 0) + v.sum(1, keepdim=True)
    eps = 1e-4
    for edge in pick_edges(res.graph, 6):
        fd = 0.0
        for i in range(len(pairs)):
            clean, corrupted, a, w = per_pair(pairs, i)
            cc, _ = caches(model, clean, corrupted)
            mean = {k: (sums[k] / count).expand_as(cc[k]) for k in sums}
            up = edge_patched_metric(model, clean, mean, cc, edge, eps, a, w)
            down = edge_patched_metric(model, clean, mean, cc, edge, -eps, a, w)
            fd += (up - down) / (2 * eps) / len(pairs)
        assert score[edge] == pytest.approx(fd, rel=1e-6, abs=1e-9), edge


@pytest.mark.parametrize("config", ["ln-mlp", "parallel"])
def test_exact_equals_brute_force_patching(config):
    model = tiny_model(**CONFIGS[config])
    pairs = random_pairs(model)
    res = ew.attribute(model, pairs, method="exact", batch_size=4)
    score = dict(zip(res.edges, res.scores.tolist()))
    for edge in pick_edges(res.graph, 10, seed=3):
        change = 0.0
        for i in range(len(pairs)):
            clean, corrupted, a, w = per_pair(pairs, i)
            cc, xc = caches(model, clean, corrupted)
            base = logit_diff_last(model(torch.tensor([clean])), a, w)
            change += (edge_patched_metric(model, clean, xc, cc, edge, 1.0, a, w) - base) / len(pairs)
        assert score[edge] == pytest.approx(change, rel=1e-9, abs=1e-12), edge


def test_scores_do_not_depend_on_batching(model, pairs):
    one = ew.attribute(model, pairs, method="eap", batch_size=1).scores
    all_ = ew.attribute(model, pairs, method="eap", batch_size=len(pairs)).scores
    torch.testing.assert_close(one, all_, rtol=1e-10, atol=1e-12)


def test_ig_one_step_is_eap_and_more_steps_converge(model, pairs):
    eap = ew.attribute(model, pairs, method="eap").scores
    for method in ("eap-ig-inputs", "eap-ig-activations"):
        one = ew.attribute(model, pairs, method=method, ig_steps=1).scores
        torch.testing.assert_close(one, eap, rtol=1e-10, atol=1e-12)
    # completeness: the input node's edges carry the whole input change, so as steps grow
    # Σ_v score(input→v) → metric(corrupted) − metric(clean) (a Riemann sum with error O(1/steps))
    f = ew.evaluate(model, pairs, [], metric="logit_diff")
    target = f.metric_corrupted - f.metric_clean
    errors = []
    for steps in (4, 16, 64):
        res = ew.attribute(model, pairs, method="eap-ig-inputs", ig_steps=steps)
        from_input = [k for k, e in enumerate(res.edges) if e.startswith("input->")]
        errors.append(abs(float(res.scores[from_input].sum()) - target))
    assert errors[1] < errors[0] / 2.5 and errors[2] < errors[1] / 2.5, errors
    assert errors[2] < 0.02 * abs(target)


def test_clean_corrupted_averages_both_ends(model, pairs):
    """2·cc − eap is the gradient at the corrupted end: −(EAP on the swapped pairs)."""
    cc = ew.attribute(model, pairs, method="clean-corrupted").scores
    eap = ew.attribute(model, pairs, method="eap").scores
    swapped = ew.PromptPairs(pairs.corrupted, pairs.clean, pairs.answer, pairs.wrong_answer)
    eap_swapped = ew.attribute(model, swapped, method="eap").scores
    torch.testing.assert_close(2 * cc - eap, -eap_swapped, rtol=1e-9, atol=1e-12)


def test_scores_follow_model_dtype_and_flags_are_restored():
    for dtype in (torch.float32, torch.float64):
        model = tiny_model(dtype=dtype)
        before = (model.cfg.use_split_qkv_input, model.cfg.use_attn_result, model.cfg.use_hook_mlp_in)
        res = ew.attribute(model, random_pairs(model), method="eap-ig-inputs", ig_steps=2)
        assert res.scores.dtype == dtype
        assert (model.cfg.use_split_qkv_input, model.cfg.use_attn_result, model.cfg.use_hook_mlp_in) == before
        assert all(p.requires_grad for p in model.parameters())
        assert all(p.grad is None for p in model.parameters())  # no parameter gradients were computed


def test_kl_warns_for_plain_eap_and_ig_does_not_vanish(model, pairs):
    with pytest.warns(UserWarning, match="zero gradient at the clean point"):
        eap = ew.attribute(model, pairs, method="eap", metric="kl")
    assert eap.scores.abs().max() < 1e-10
    assert any("eap-ig-inputs" in w for w in eap.warnings)
    ig = ew.attribute(model, pairs, method="eap-ig-inputs", metric="kl", ig_steps=4)
    assert ig.scores.abs().max() > 1e-3


def test_prob_diff_and_custom_metric(model, pairs):
    res = ew.attribute(model, pairs, method="eap", metric="prob_diff")
    assert res.metric == "prob_diff" and res.scores.abs().max() > 0
    # a callable metric: 2 × logit_diff doubles every score
    double = ew.attribute(model, pairs, method="eap", metric=lambda lg, b: 2 * ew.metrics.logit_diff(lg, b))
    torch.testing.assert_close(double.scores, 2 * ew.attribute(model, pairs, method="eap").scores)


def test_progress_reports_and_can_cancel(model, pairs):
    seen = []
    ew.attribute(model, pairs, method="eap-ig-inputs", ig_steps=3, batch_size=2, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and len(seen) >= 3

    class Stop(Exception):
        pass

    def stop(f):
        raise Stop

    with pytest.raises(Stop):
        ew.attribute(model, pairs, method="eap", progress=stop)
    assert not model.cfg.use_split_qkv_input  # flags restored after the cancel too


def test_bad_arguments_are_named(model, pairs):
    with pytest.raises(ValueError, match="unknown method 'eapp'"):
        ew.attribute(model, pairs, method="eapp")
    with pytest.raises(ValueError, match="unknown metric 'logitdiff'"):
        ew.attribute(model, pairs, metric="logitdiff")
    with pytest.raises(ValueError, match="unknown ablation 'noise'"):
        ew.attribute(model, pairs, ablation="noise")
    no_answers = ew.PromptPairs(pairs.clean, pairs.corrupted, None, None)
    with pytest.raises(ValueError, match="needs answer and wrong_answer"):
        ew.attribute(model, no_answers, metric="logit_diff")
