"""RelP against its definition: EAP on the model frozen at the clean run.

Freeze, with plain TransformerLens hooks, every norm's scale σ, every attention pattern and every MLP
ratio f(x)/x at their clean-run values (gated MLPs: each factor's half, module doc of relevance.py).
The frozen model computes the clean run exactly and is affine in every input slot, so patching one
edge there changes the metric by exactly its RelP score: no ε, no tolerance beyond float64 rounding.
Nothing here uses edgewise's gradient code.
"""
import pytest
import torch
from brute import caches, edge_patched_metric, logit_diff_last, zero_cache
from conftest import random_pairs, tiny_model

import edgewise as ew
from transformer_lens import HookedTransformer, HookedTransformerConfig


def gated_model(seed=0):
    """RMSNorm and a SiLU-gated MLP (Llama-style), float64."""
    torch.manual_seed(seed)
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=12, d_head=8, n_heads=2, d_vocab=11, act_fn="silu",
                                  normalization_type="RMS", gated_mlp=True, d_mlp=32, dtype=torch.float64, seed=seed,
                                  device="cpu", default_prepend_bos=False)
    model = HookedTransformer(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("b_Q", "b_K", "b_V", "b_O", "b_in", "b_out")):
                p.normal_(0, 0.1)
    return model


def frozen_hooks(model, clean):
    """Hooks that replace σ, patterns and MLP ratios by their values in the clean run of `clean`."""
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.tensor([clean]))
    hooks, live = [], {}

    def const(name):
        return name, lambda x, hook: cache[name]

    for name in cache.keys():
        if name.endswith(("hook_scale", "attn.hook_pattern")):
            hooks.append(const(name))
    for layer, block in enumerate(model.blocks):
        if model.cfg.attn_only:
            continue
        mlp, gated = f"blocks.{layer}.mlp", model.cfg.gated_mlp
        hooks.append((f"{mlp}.hook_pre", lambda x, hook: live.__setitem__("pre", x)))
        if gated:
            hooks.append((f"{mlp}.hook_pre_linear", lambda x, hook: live.__setitem__("lin", x)))
        gate_c = cache[f"{mlp}.hook_pre"]
        act_c = block.mlp.act_fn(gate_c)
        ratio = act_c / gate_c
        if gated:
            lin_c, b_in = cache[f"{mlp}.hook_pre_linear"], block.mlp.b_in

            def post(y, hook, ratio=ratio, act_c=act_c, lin_c=lin_c, b_in=b_in):
                return 0.5 * (ratio * live["pre"] * lin_c + act_c * live["lin"]) + b_in
        else:
            def post(y, hook, ratio=ratio):
                return ratio * live["pre"]
        hooks.append((f"{mlp}.hook_post", post))
    return hooks


class Frozen:
    """Scores by patching the frozen model: for each edge, the mean over pairs of
    metric_frozen(edge patched) − metric_frozen(clean); repl_of(clean cache, corrupted cache) gives
    what a patched source carries."""

    def __init__(self, model, pairs, repl_of=lambda cc, xc: xc):
        self.model, self.runs = model, []
        for i in range(len(pairs)):
            clean, a, w = pairs.clean[i], pairs.answer[i], pairs.wrong_answer[i]
            cc, xc = caches(model, clean, pairs.corrupted[i])
            hooks = frozen_hooks(model, clean)
            with model.hooks(fwd_hooks=hooks):
                base = logit_diff_last(model(torch.tensor([clean])), a, w)
            assert base == pytest.approx(logit_diff_last(model(torch.tensor([clean])), a, w), rel=1e-12)  # clean run
            self.runs.append((clean, cc, repl_of(cc, xc), hooks, base, a, w))

    def score(self, edge):
        total = 0.0
        for clean, cc, repl, hooks, base, a, w in self.runs:
            with self.model.hooks(fwd_hooks=hooks):
                total += edge_patched_metric(self.model, clean, repl, cc, edge, 1.0, a, w) - base
        return total / len(self.runs)


CONFIGS = {
    "ln-gelu": lambda: tiny_model(seed=4),
    "rms-gated-silu": lambda: gated_model(seed=2),
    "attn-only": lambda: tiny_model(seed=3, attn_only=True),
    "parallel": lambda: tiny_model(seed=5, parallel=True),
    "ln-pre": lambda: tiny_model(seed=6, normalization="LNPre"),
    "no-norm": lambda: tiny_model(seed=7, normalization=None),
}


@pytest.mark.parametrize("config", CONFIGS)
def test_relp_is_exact_patching_of_the_frozen_model(config):
    """Every edge (q, k, v, MLP, logits slots, every source): RelP = patching the frozen model."""
    model = CONFIGS[config]()
    pairs = random_pairs(model, n=2, seed=11)
    res = ew.attribute(model, pairs, method="relp", batch_size=2)
    assert res.method == "relp"
    frozen = Frozen(model, pairs)
    for edge, score in zip(res.edges, res.scores.tolist()):
        want = frozen.score(edge)
        assert score == pytest.approx(want, rel=1e-9, abs=1e-11), edge


def test_relp_under_zero_ablation_and_in_batches():
    """Zero ablation replaces every source by 0, including the input (where EAP sees ~0 through
    LayerNorm's scale invariance); scores do not depend on how pairs are batched."""
    model = tiny_model(seed=8)
    pairs = random_pairs(model, n=4, seed=12)
    res = ew.attribute(model, pairs, method="relp", ablation="zero", batch_size=3)
    one = ew.attribute(model, pairs, method="relp", ablation="zero", batch_size=1)
    torch.testing.assert_close(res.scores, one.scores, rtol=1e-10, atol=1e-12)
    score = dict(zip(res.edges, res.scores.tolist()))
    edges = [e for e in res.edges if e.startswith("input->a0.")][:4] + ["a1.h0->m2", "m0->logits", "a0.h1->a2.h0<v>"]
    frozen = Frozen(model, pairs, lambda cc, xc: zero_cache(cc))
    for edge in edges:
        want = frozen.score(edge)
        assert score[edge] == pytest.approx(want, rel=1e-9, abs=1e-11), edge
    input_v = [e for e in res.edges if e.startswith("input->a0.") and e.endswith("<v>")]
    assert max(abs(score[e]) for e in input_v) > 1e-3  # RelP sees the input's zero ablation


def test_relp_is_eap_where_no_rule_applies():
    """Norm-free and attention-only: the logits slot and the last layer's v slots see no norm, no
    MLP and no pattern between them and the metric, so their RelP and EAP scores are equal; q and k
    slots score 0 under RelP (patterns held constant) and not under EAP."""
    model = tiny_model(seed=9, normalization=None, attn_only=True)
    pairs = random_pairs(model, n=3, seed=13)
    eap = ew.attribute(model, pairs, method="eap", batch_size=3)
    relp = ew.attribute(model, pairs, method="relp", batch_size=3)
    last = model.cfg.n_layers - 1
    same = [i for i, e in enumerate(eap.edges) if e.endswith("->logits") or (f"->a{last}." in e and e.endswith("<v>"))]
    torch.testing.assert_close(relp.scores[same], eap.scores[same], rtol=1e-10, atol=1e-12)
    qk = [i for i, e in enumerate(relp.edges) if e.endswith(("<q>", "<k>"))]
    assert relp.scores[qk].abs().max() == 0 and eap.scores[qk].abs().max() > 1e-3
    rest = [i for i in range(len(eap.edges)) if i not in set(same) | set(qk)]
    assert (relp.scores[rest] - eap.scores[rest]).abs().max() > 1e-3  # earlier v slots: patterns frozen downstream


def pearson(a, b):
    return float(torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1])


def test_relp_tracks_exact_patching_of_mlp_outputs_where_eap_does_not():
    """The paper's headline (its Table 1: GPT-2 small MLP outputs, attribution patching 0.195 vs RelP
    0.992 Pearson with activation patching), on toy-ioi's 82 edges out of MLPs, 16 pairs: measured
    RelP 0.926, EAP 0.470 (all 200 pairs: 0.925 and 0.402)."""
    task = ew.load_task("toy-ioi")
    model, pairs = task.hooked_model, task.pairs.subset(range(16))
    exact = ew.attribute(model, pairs, method="exact", batch_size=16).scores
    eap = ew.attribute(model, pairs, method="eap", batch_size=16).scores
    relp = ew.attribute(model, pairs, method="relp", batch_size=16).scores
    mlp = torch.tensor([e.startswith("m") for e in ew.Graph.from_model(model).edge_names])
    assert int(mlp.sum()) == 82
    assert pearson(relp[mlp], exact[mlp]) > 0.9 > 0.6 > pearson(eap[mlp], exact[mlp])


def test_kl_warns_for_relp():
    """KL's gradient is 0 at the clean run, and RelP's coefficients start from it: scores ~0, said so."""
    model = tiny_model()
    pairs = random_pairs(model)
    with pytest.warns(UserWarning, match="relp scores are ~0"):
        res = ew.attribute(model, pairs, method="relp", metric="kl", batch_size=6)
    assert res.scores.abs().max() < 1e-6 and any("relp scores are ~0" in w for w in res.warnings)
