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
  exact               no gradient: the measured change in the metric when only u→v is patched
One data loop serves all; scoring is one matmul per input slot, over the sources upstream of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .activations import ABLATIONS, ablated_acts, edge_hooks_enabled, is_bidirectional, source_means, write_hooks
from .arch import head_input_norm
from .circuit import Circuit, rank_edges
from .graph import Graph
from .metrics import get_metric, warn_if_vanishing
from .patching import run_patched

METHODS = ("eap", "eap-ig-inputs", "eap-ig-activations", "clean-corrupted", "exact")


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
    if method == "eap":
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
              ablation: str = "resample", ig_steps: int = 5, progress=None) -> AttributionResult:
    """Score every edge of `model` (any TransformerLens HookedTransformer) on `pairs`.

    progress(fraction) is called after each unit of work; it may raise to cancel the run.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r}; choose from {', '.join(ABLATIONS)}")
    graph = Graph.from_model(model)
    m = get_metric(metric)
    notes = [w for w in [warn_if_vanishing(m, method)] if w] + list(getattr(pairs, "warnings", []))
    device = model.cfg.device
    split = is_bidirectional(model)
    scores = torch.zeros(graph.n_sources, graph.n_inputs, dtype=model.cfg.dtype, device=device)
    points = [] if method == "exact" else gradient_points(method, graph, ig_steps)
    n_batches = pairs.n_batches(batch_size, split)
    # the gradient passes read head inputs through ln1's Jacobian; only exact patches them per head
    with edge_hooks_enabled(model, freeze=True, split_qkv=method == "exact"):
        means = source_means(model, graph, pairs, batch_size, device, split) if ablation == "mean" else None
        for b, batch in enumerate(pairs.batches(batch_size, device, split)):
            abl, _ = ablated_acts(model, graph, batch, ablation, means)
            if method == "exact":
                _exact_batch(model, graph, batch, m, abl, scores,
                             lambda f: progress and progress((b + f) / n_batches))
            else:
                _gradient_batch(model, graph, batch, m, abl, points, scores,
                                lambda f: progress and progress((b + f) / n_batches))
    scores /= len(pairs)
    return AttributionResult(graph, scores.cpu(), method, m.name, ablation, len(pairs),
                             pairs.sha256() if hasattr(pairs, "sha256") else "",
                             getattr(model.cfg, "model_name", ""), notes)


def _gradient_batch(model, graph, batch, metric, diff, points, scores, progress):
    """Add Σ_pairs Σ_pos diff·grad for every point to `scores`. `diff` enters holding a_abl and is
    turned into a_abl − a_clean by the clean pass (the gradient pass itself, for plain EAP)."""
    clean_pass = write_hooks(model, graph, diff, sign=-1.0)
    fused = len(points) == 1 and points[0].alpha == 1.0  # eap: one clean forward fills diff and takes the gradient
    if not fused:
        with torch.no_grad(), model.hooks(fwd_hooks=clean_pass):
            batch.clean_logits = model(batch.clean)
        _mask_padding(diff, batch)
    sources, writes = graph.source_hooks(), graph.residual_write_hooks()
    for k, p in enumerate(points):
        rows = sources[p.hook][1]
        hooks = [("blocks.0.hook_resid_pre", _leaf_hook)]
        if p.alpha != 1.0:  # a layer's heads move together: their sum enters at hook_attn_out
            d = diff[rows] if isinstance(rows, int) else diff[rows].sum(0)
            hooks.append((writes[p.hook], _interpolation_hook(d, 1.0 - p.alpha)))
        grad_hooks, flushers = _grad_hooks(model, graph, diff, scores, p.rows, p.weight)
        with model.hooks(fwd_hooks=hooks + (clean_pass if fused else []) + grad_hooks):
            logits = model(batch.clean)
            if fused:
                batch.clean_logits = logits.detach()
                _mask_padding(diff, batch)
            metric(logits, batch).sum().backward()
        for flush in flushers:  # slots whose q, k or v got no gradient
            flush()
        progress((k + 1) / len(points))


def _mask_padding(diff, batch):
    """Padding never counts (its gradient is 0 anyway under causal attention)."""
    if not bool(batch.mask.all()):
        diff *= batch.mask[None, :, :, None]


def _leaf_hook(x, hook):
    """Start the autograd graph at the residual stream (parameters are frozen)."""
    return x.detach().requires_grad_(True)


def _interpolation_hook(diff, beta):
    """output ← output + β (a_abl − a_clean), [B, P, d]: β = 1 − α moves it from clean toward ablated."""

    def hook(x, hook):
        return x + beta * diff

    return hook


def _grad_hooks(model, graph: Graph, diff, scores, rows: slice, weight: float):
    """Forward hooks that register gradient hooks: when ∂metric/∂input_v arrives,
    scores[u, v] += weight · Σ_{b,p,d} diff[u, b, p, d] · grad_v[b, p, d] for the upstream sources u.
    Returns (hooks, flushers): call every flusher after backward."""
    hooks = []
    shared: dict = {"U": None, "owner": None, "flush": {}}  # one [3H, B·P, d] buffer serves every layer in turn
    for layer in range(graph.cfg.n_layers):
        cols = graph.head_inputs(layer)
        r1 = min(rows.stop, int(graph.n_upstream[cols.start]))
        if r1 > rows.start:
            hooks += _head_input_grads(model, layer, diff, scores, slice(rows.start, r1), cols, weight, shared)
    for name, col in graph.residual_input_hooks():
        r0, r1 = rows.start, min(rows.stop, int(graph.n_upstream[col]))
        if r1 <= r0:
            continue

        def on_grad(g, r0=r0, r1=r1, col=col):  # MLP input or logits: g [B, P, d]
            scores[r0:r1, col] += weight * (diff[r0:r1].reshape(r1 - r0, -1) @ g.reshape(-1))

        def hook(x, hook, on_grad=on_grad):
            if x.requires_grad:
                x.register_hook(on_grad)

        hooks.append((name, hook))
    return hooks, list(shared["flush"].values())


def _head_input_grads(model, layer, diff, scores, rows: slice, cols: slice, weight, shared):
    """Head input slots without splitting the model's q/k/v inputs per head (TransformerLens's
    split runs LayerNorm 3·n_heads times per layer). Head h's q input x feeds q_h = ln1(x) W_Q[h], so

        ∂metric/∂x (q of head h) = J_ln1(x)ᵀ (W_Q[h] ∂metric/∂q_h)        [B, P, d_model]

    For LayerNorm, with x̂ = (x − mean)/σ and U = w ⊙ (W_Q[h] ∂metric/∂q_h) / σ:
        J_ln1ᵀ(...) = U − mean_d(U) − x̂ · mean_d(U ⊙ x̂)     (RMSNorm: no mean_d(U) term)
    The q, k, v of every head of the layer share one [3H, B·P, d] buffer and one matmul with diff."""
    attn, ln = model.blocks[layer].attn, head_input_norm(model, layer)  # identity for post-norm blocks
    H = attn.W_Q.shape[0]
    kind = type(ln).__name__
    state: dict = {"x": None, "U": None, "filled": set()}

    def normalize():  # σ [B, P, 1] and x̂ [B, P, d] of this layer's attention input
        x = state["x"]
        if kind in ("LayerNorm", "LayerNormPre"):
            x = x - x.mean(-1, keepdim=True)
        if kind in ("LayerNorm", "LayerNormPre", "RMSNorm", "RMSNormPre"):
            sigma = (x.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt()
            return sigma, x / sigma
        return None, None

    def on_grad(letter, g):  # g: ∂metric/∂q [B, P, H, d_head]; W: [H, d_model, d_head]
        B, P = g.shape[:2]
        if state["U"] is None:
            if shared["owner"] is not None:  # another layer still holds the buffer: finish it first
                shared["flush"][shared["owner"]]()
            shape = (3 * H, B * P, attn.W_Q.shape[1])
            if shared["U"] is None or shared["U"].shape != shape:
                shared["U"] = torch.empty(shape, dtype=g.dtype, device=g.device)
            state["U"], shared["owner"] = shared["U"], layer
            state["sigma"], state["xhat"] = normalize()
        W = {"q": attn.W_Q, "k": attn.W_K, "v": attn.W_V}[letter].detach()
        if kind in ("LayerNorm", "RMSNorm"):
            W = W * ln.w.detach()[:, None]
        if state["sigma"] is not None:
            g = g / state["sigma"][..., None]
        i = "qkv".index(letter)
        torch.bmm(g.permute(2, 0, 1, 3).reshape(H, B * P, -1), W.transpose(1, 2), out=state["U"][i * H:(i + 1) * H])
        state["filled"].add(letter)
        if len(state["filled"]) == 3:
            flush()

    def flush():
        U = state["U"]
        if U is None:
            return
        for i, letter in enumerate("qkv"):
            if letter not in state["filled"]:
                U[i * H:(i + 1) * H] = 0
        if kind in ("LayerNorm", "LayerNormPre", "RMSNorm", "RMSNormPre"):
            xhat = state["xhat"].reshape(1, U.shape[1], -1)
            c = torch.einsum("jkd,kd->jk", U, xhat[0]) / U.shape[2]
            if kind.startswith("LayerNorm"):
                U -= U.mean(-1, keepdim=True)
            U.addcmul_(xhat, c[..., None], value=-1.0)
        elif not isinstance(ln, torch.nn.Identity):  # another norm: its exact Jacobian, by autograd
            _, vjp = torch.func.vjp(ln, state["x"])
            B, P, d = state["x"].shape
            sigma_free = U.reshape(3 * H, B, P, d)  # U holds W ∂metric/∂q here (no σ, no w folded in)
            U.copy_(torch.vmap(vjp)(sigma_free)[0].reshape(3 * H, B * P, d))
        n = rows.stop - rows.start
        scores[rows, cols] += weight * (diff[rows].reshape(n, -1) @ U.reshape(3 * H, -1).T)
        state["U"], state["filled"], shared["owner"] = None, set(), None

    def keep_input(x, hook):
        state["x"] = x.detach()

    def grad_hook(letter):
        def hook(x, hook):
            if x.requires_grad:
                x.register_hook(lambda g: on_grad(letter, g))
        return hook

    shared["flush"][layer] = flush
    return [(f"blocks.{layer}.hook_resid_pre", keep_input)] + \
        [(f"blocks.{layer}.attn.hook_{c}", grad_hook(c)) for c in "qkv"]


def _exact_batch(model, graph, batch, metric, abl, scores, progress):
    """For every edge alone: Σ_pairs metric(clean with that edge patched) − metric(clean)."""
    with torch.no_grad():
        batch.clean_logits = model(batch.clean)
        base = metric(batch.clean_logits, batch)
        edges = graph.edge_index.tolist()
        for k, (s, i) in enumerate(edges):
            one = torch.zeros_like(graph.edge_mask)
            one[s, i] = True
            scores[s, i] += (metric(run_patched(model, graph, batch, abl, one), batch) - base).sum()
            if k % 64 == 63:
                progress((k + 1) / len(edges))
    progress(1.0)
