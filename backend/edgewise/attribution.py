"""Edge attribution: a score for every edge of the graph from a few passes over the prompt pairs.

    score(u→v) = mean over pairs of Σ_pos (a_abl(u) − a_clean(u)) · ∂metric/∂input_v

(EAP, Syed, Rager & Conmy 2023). a_abl is the corrupted prompt's activation (resample), zero, or
the mean; a score approximates the change in the metric when edge u→v alone carries a_abl(u).
Methods differ only in *where* ∂metric/∂input_v is taken (α = how far the run is from the ablated end):
  eap                 the clean run (α = 1)
  eap-ig-inputs       the input embedding at α = k/m, k = 1..m, averaged (Hanna et al. 2024);
                      so ig_steps=1 is exactly eap
  eap-ig-activations  for the sources of one layer-group (input, a layer's heads, an MLP), their
                      outputs at α = k/m while everything else is clean; scores only those rows
  clean-corrupted     the clean run and the ablated run (α = 0), averaged
  relp                the clean run, through LRP's rules instead of the local Jacobians (relevance.py:
                      norm scales, attention patterns and MLP ratios f(x)/x held constant)
  exact               no gradient: the measured change in the metric when only u→v is patched
One data loop serves all; scoring is one matmul per layer over the sources upstream of it
(gradients.py: the head inputs' gradients through the norm's Jacobian, handed back to autograd).
`score_sums` is the same loop over explicit batches of pair indices: the seam for sharding.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from .activations import (ABLATIONS, HeadNorm, accumulation_dtype, ablated_acts, edge_hooks_enabled,
                          is_bidirectional, per_model, source_means, write_hooks)
from .circuit import Circuit, rank_edges
from .gradients import HeadWeights, SlotGrads, score_layer
from .graph import Graph
from .metrics import get_metric, warn_if_vanishing
from .patching import Patcher
from .relevance import LRPRules, check_model as check_relp_model

METHODS = ("eap", "eap-ig-inputs", "eap-ig-activations", "clean-corrupted", "relp", "exact")


@dataclass(frozen=True)
class GradientPoint:
    """Where one backward pass takes its gradient: the outputs of source hook `hook` (index into
    graph.source_hooks(); 0 = input embedding) at α between ablated (0) and clean (1)."""

    hook: int
    alpha: float
    rows: slice  # score rows (sources) this gradient serves
    weight: float


def gradient_points(method: str, graph: Graph, ig_steps: int) -> list[GradientPoint]:
    every = slice(0, graph.n_sources)
    if method in ("eap", "relp"):
        return [GradientPoint(0, 1.0, every, 1.0)]
    if method == "clean-corrupted":
        return [GradientPoint(0, 1.0, every, 0.5), GradientPoint(0, 0.0, every, 0.5)]
    if ig_steps < 1:
        raise ValueError(f"ig_steps must be ≥ 1, got {ig_steps}")
    alphas = [k / ig_steps for k in range(1, ig_steps + 1)]
    if method == "eap-ig-inputs":
        return [GradientPoint(0, a, every, 1 / ig_steps) for a in alphas]
    if method == "eap-ig-activations":
        points = []
        for h, (_, rows) in enumerate(graph.source_hooks()):
            rows = rows if isinstance(rows, slice) else slice(rows, rows + 1)
            points += [GradientPoint(h, a, rows, 1 / ig_steps) for a in alphas]
        return points
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


@dataclass
class AttributionResult:
    """Scores of every edge. `matrix` is the dense [n_sources, n_inputs] truth; `edges`/`scores` are its view."""

    graph: Graph
    matrix: torch.Tensor
    method: str
    metric: str
    ablation: str
    n_pairs: int
    dataset_sha256: str = ""
    model: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def edges(self) -> list[str]:
        return self.graph.edge_names

    @property
    def scores(self) -> torch.Tensor:
        return self.matrix[self.graph.edge_mask]

    def ranking(self) -> torch.Tensor:
        """Edge positions by |score|, largest first (ties keep graph order)."""
        return rank_edges(self.scores)

    def circuit(self, top_k: int | None = None, min_abs_score: float | None = None):
        """The circuit of the top_k edges by |score|, or of every edge with |score| ≥ min_abs_score."""
        return Circuit.from_scores(self.graph, self.scores, top_k=top_k, min_abs_score=min_abs_score,
                                   model=self.model, method=self.method, metric=self.metric,
                                   dataset={"n_pairs": self.n_pairs, "sha256": self.dataset_sha256})


def attribute(model, pairs, method: str = "eap", metric="logit_diff", batch_size: int = 32,
              ablation: str = "resample", ig_steps: int = 5, progress=None, workers: int | None = None,
              ray_address: str | None = None) -> AttributionResult:
    """Score every edge of `model` (any TransformerLens HookedTransformer) on `pairs`.

    progress(fraction) is called after each unit of work; it may raise to cancel the run.
    Scores are float32 for float32/bf16/fp16 models, float64 for float64 models.
    With `workers` or `ray_address`, shards of pairs run on Ray actors that load `model` by name
    (distributed.py; the extra `edgewise[ray]`): the same scores up to float rounding.
    """
    if workers is not None or ray_address is not None:
        from .distributed import attribute as sharded

        return sharded(model, pairs, method, metric, batch_size, ablation, ig_steps, progress, workers, ray_address)
    notes = _check(method, ablation, model)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    graph = Graph.from_model(model)
    m = get_metric(metric)
    notes = [w for w in [warn_if_vanishing(m, method)] + notes if w] + list(getattr(pairs, "warnings", []))
    sums = score_sums(model, pairs, pairs._chunks(batch_size, is_bidirectional(model)), method, m, ablation,
                      ig_steps, progress=progress, graph=graph)
    return AttributionResult(graph, (sums / len(pairs)).cpu(), method, m.name, ablation, len(pairs),
                             pairs.sha256() if hasattr(pairs, "sha256") else "",
                             getattr(model.cfg, "model_name", ""), notes)


def score_sums(model, pairs, chunks, method: str = "eap", metric="logit_diff", ablation: str = "resample",
               ig_steps: int = 5, means: torch.Tensor | None = None, progress=None, graph: Graph | None = None):
    """Seam for sharding: Σ over the pairs of `chunks` of each pair's scores, [n_sources, n_inputs]
    (float32, float64 for float64 models). `chunks` are lists of pair indices, one batch each, as
    `pairs._chunks(batch_size, split_lengths)` makes them; `attribute` is this sum over every chunk
    divided by len(pairs), and the sum does not depend on how pairs are grouped into chunks (up to
    float rounding). Mean ablation replaces sources by their means over the *whole* dataset: pass
    `means` (activations.source_mean_sums summed over all shards, divided by the count); without
    it they are computed here from every pair of `pairs`."""
    _check(method, ablation, model)
    graph = graph or Graph.from_model(model)
    m = get_metric(metric)
    device = model.cfg.device
    scores = torch.zeros(graph.n_sources, graph.n_inputs, dtype=accumulation_dtype(model.cfg.dtype), device=device)
    points = [] if method == "exact" else gradient_points(method, graph, ig_steps)
    chunks = list(chunks)
    report = progress or (lambda f: None)
    # the gradient passes read head inputs through the norm's Jacobian, without TransformerLens's split q/k/v
    with edge_hooks_enabled(model, freeze=True):
        if ablation == "mean" and means is None:
            means = source_means(model, graph, pairs, max(len(c) for c in chunks), device, is_bidirectional(model))
        weights = per_model(model, Patcher, Patcher) if method == "exact" else per_model(model, HeadWeights, HeadWeights)
        for b, idx in enumerate(chunks):
            batch = pairs._batch(idx, device)
            step = _Progress(report, b, len(chunks))
            if method == "exact":
                abl = ablated_acts(model, graph, batch, ablation, means)[0]
                _exact_batch(model, graph, batch, m, abl, scores, step, weights)
                del abl
            else:
                z_abl: dict = {}  # heads: a_abl − a_clean = (z_abl − z_clean) W_O, one matmul per layer
                diff = ablated_acts(model, graph, batch, ablation, means, z_store=z_abl)[0]
                _gradient_batch(model, graph, batch, m, diff, points, scores, step, weights, z_abl,
                                relp=method == "relp")
                del diff, z_abl
            del batch  # the next batch's corrupted pass must not find this one alive
    return scores


def _check(method: str, ablation: str, model=None) -> list[str]:
    """ValueError for an unknown or ill-defined method/ablation (method_warnings); else its warnings."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r}; choose from {', '.join(ABLATIONS)}")
    if method == "relp" and model is not None:
        check_relp_model(model)
    return method_warnings(model, method, ablation) if model is not None else []


def method_checks(model) -> dict:
    """{"method/ablation": ["error", message] or ["warn", *notes]} for every pair on `model`: what
    _check decides, carried to where the model is not (a Ray driver holds only its name)."""
    out = {}
    for method in METHODS:
        for ablation in ABLATIONS:
            try:
                out[f"{method}/{ablation}"] = ["warn", *_check(method, ablation, model)]
            except ValueError as e:
                out[f"{method}/{ablation}"] = ["error", str(e)]
    return out


def apply_checks(checks: dict, method: str, ablation: str) -> list[str]:
    """_check for a model known by its method_checks: raises its ValueError, else returns its notes."""
    _check(method, ablation)
    kind, *rest = checks[f"{method}/{ablation}"]
    if kind == "error":
        raise ValueError(rest[0])
    return rest


class _Progress:
    """progress(fraction of batch b done) → the caller's progress over all batches (no closure cycles)."""

    def __init__(self, report, b: int, n: int):
        self.report, self.b, self.n = report, b, n

    def __call__(self, f: float):
        self.report((self.b + f) / self.n)


def _gradient_batch(model, graph, batch, metric, diff, points, scores, progress, weights, z_abl, relp=False):
    """Add Σ_pairs Σ_pos diff·grad for every point to `scores`. `diff` enters holding a_abl (heads:
    their ablated z in z_abl) and is turned into a_abl − a_clean by the clean pass (the gradient
    pass itself, for plain EAP and RelP). `relp`: the backward through LRP's rules (relevance.py)."""
    clean_pass = write_hooks(model, graph, diff, sign=-1.0, z_abl=z_abl)
    fused = len(points) == 1 and points[0].alpha == 1.0  # eap: one clean forward fills diff and takes the gradient
    if not fused:
        with torch.no_grad(), model.hooks(fwd_hooks=clean_pass):
            batch.clean_logits = model(batch.clean)
        _mask_padding(diff, batch)
    sources, writes = graph.source_hooks(), graph.residual_write_hooks()
    # points that share diff's rows (IG steps, both ends) sum their head-input gradients and are scored
    # by one matmul per layer at the end, when that sum fits the budget
    shared = len(points) > 1 and all(p.rows == points[0].rows for p in points)
    acc = {} if shared and _accumulator_bytes(graph, diff) <= ACCUMULATE_BYTES else None
    for k, p in enumerate(points):
        rows = sources[p.hook][1]
        hooks = [("blocks.0.hook_resid_pre", _leaf_hook)]
        if p.alpha != 1.0:  # a layer's heads move together: their sum enters at hook_attn_out
            d = diff[rows] if isinstance(rows, int) else diff[rows].sum(0)
            hooks.append((writes[p.hook], _Interpolation(d, 1.0 - p.alpha)))
        grads = SlotGrads(model, graph, diff, scores, p.rows, p.weight, weights, acc, relp=relp)
        rules = LRPRules(model) if relp else None
        try:
            with model.hooks(fwd_hooks=hooks + (clean_pass if fused else []) + grads.hooks()
                             + (rules.hooks() if rules else [])):
                logits = model(batch.clean)
                if fused:
                    batch.clean_logits = logits.detach()
                    _mask_padding(diff, batch)
                metric(logits, batch).sum().backward()
                del logits
        finally:
            grads.close()  # scores what is pending, drops every reference of this pass
            if rules:
                rules.close()
            hooks = rules = None
        progress((k + 1) / len(points))
    if acc:
        for layer in sorted(acc):
            score_layer(graph, diff, scores, layer, grads.head_rows(layer), acc.pop(layer), first=grads.first)
    batch.clean_logits = None


ACCUMULATE_BYTES = 1 << 30  # IG: sum head-input gradients over steps (one score matmul per layer) up to this


def _accumulator_bytes(graph: Graph, diff: torch.Tensor) -> int:
    """Bytes of the per-layer sums of head-input gradients: n_layers × (3H + 2) rows like diff's."""
    return graph.cfg.n_layers * (3 * graph.cfg.n_heads + 2) * diff[0].numel() * diff.element_size()


def _mask_padding(diff, batch):
    """Padding never counts (its gradient is 0 anyway under causal attention)."""
    if not bool(batch.mask.all()):
        diff *= batch.mask[None, :, :, None]


def _leaf_hook(x, hook):
    """Start the autograd graph at the residual stream (parameters are frozen)."""
    return x.detach().requires_grad_(True)


class _Interpolation:
    """output ← output + β (a_abl − a_clean), [B, P, d]: β = 1 − α moves it from clean toward ablated."""

    def __init__(self, diff, beta):
        self.diff, self.beta = diff, beta

    def __call__(self, x, hook):
        return x + self.beta * self.diff


def _exact_batch(model, graph, batch, metric, abl, scores, progress, patcher: Patcher, stack: int | None = None):
    """For every edge alone: Σ_pairs metric(clean with that edge patched) − metric(clean).
    Several single-edge circuits run as one stacked forward (budget: ~256 MiB of patch buffers)."""
    with torch.no_grad():
        clean_logits = model(batch.clean)
        batch.clean_logits = clean_logits
        base = metric(clean_logits, batch).to(scores.dtype)
        ablated = patcher.prepare(abl)
        edges = graph.edge_index
        per_circuit = (graph.n_sources + 2) * abl[0].numel() * abl.element_size() + clean_logits.numel() * 4
        C = stack or max(1, min(64, (256 << 20) // max(per_circuit, 1)))
        for k0 in range(0, len(edges), C):
            part = edges[k0:k0 + C]
            one = torch.zeros(len(part), graph.n_sources, graph.n_inputs, dtype=torch.bool)
            one[torch.arange(len(part)), part[:, 0], part[:, 1]] = True
            logits = patcher.logits(batch, ablated, one)
            for j, (s, i) in enumerate(part.tolist()):
                batch.clean_logits = clean_logits
                scores[s, i] += (metric(logits[j], batch).to(scores.dtype) - base).sum()
            del logits
            progress(min(1.0, (k0 + len(part)) / len(edges)))
        batch.clean_logits = None
    progress(1.0)


# ---------------------------------------------------------------- ill-defined combinations
def method_warnings(model, method: str, ablation: str) -> list[str]:
    """Warnings for a method/ablation pair on `model`; ValueError where it is ill-defined.

    Under zero ablation the ablated input embedding is 0, and layer 0 reads it through a norm
    n(x) = (x − mean)/σ(x) that is scale-invariant: its Jacobian at α·x is J(x)/α, orthogonal to x
    (up to eps/var), and at x = 0 it is w/√eps. So a gradient taken at α = 0 (clean-corrupted), or
    on the path α·x (eap-ig-inputs), scores the input's edges into layer 0 by how eps bends the norm
    near 0, not by the model: refused, as EAP-IG refuses them. On the input's rows alone
    (eap-ig-activations), or at the clean end (eap: those edges score ~0), a warning says so.
    The IG end α = 0 of eap-ig-inputs / clean-corrupted is the model run on the ablated *input*,
    not every source ablated: under mean ablation (or zero, without a norm) that is warned."""
    normed = HeadNorm.of(model, 0).scale
    alpha0 = method in ("eap-ig-inputs", "clean-corrupted")
    if ablation == "zero" and normed and alpha0:
        raise ValueError(
            f"method {method!r} with ablation 'zero' is ill-defined on this model: layer 0 reads the input "
            f"embedding through a {type(HeadNorm.of(model, 0).module).__name__}, and "
            + ("the ablated end (α = 0, embedding 0) is where it divides by √eps" if method == "clean-corrupted"
               else "on the path α·embedding it is blind until α ≈ √(eps/variance), near the ablated end")
            + ", so the input's edges into layer 0 score what eps"
            + (" makes" if method == "clean-corrupted" else " and ig_steps make") + " of it, not the model. "
            "Use eap-ig-activations, relp or exact with zero ablation, or resample / mean ablation "
            "(EAP-IG refuses this combination too)")
    notes = []
    if ablation == "zero" and normed and method in ("eap", "eap-ig-activations"):
        notes.append(
            f"{method} with zero ablation: the input's edges into layer 0 are seen through a scale-invariant norm "
            + ("(its gradient is orthogonal to a_zero − a_clean = −a_clean), so they score ~0"
               if method == "eap" else "(blind along α·embedding until α ≈ √(eps/variance)), so their scores "
               "grow with ig_steps")
            + "; relp and exact measure them")
    if alpha0 and ablation in ("mean", "zero"):
        notes.append(
            f"{method} with {ablation} ablation: its α = 0 end is the model run on the {ablation} input embedding, "
            f"not every source at its {ablation} value, so the path does not end at the ablation the scores are "
            "measured against (EAP-IG refuses this combination)")
    return notes
