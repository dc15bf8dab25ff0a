"""Run the model with a set of edges patched: one forward pass, any set of edges.

An input slot v reads the residual stream, which is the sum of its upstream sources. Patching
edge u→v means v sees u's *ablated* output instead of u's output in this run:

    input_v ← input_v + Σ_u  w[u, v] · (a_abl(u) − a_run(u))          [B, P, (H,) d_model]

computed as one matmul per layer for the q, k and v inputs of all its heads.

with w = 1 for a patched edge and 0 for a kept one (fractional w moves the edge part-way, which
the finite-difference tests use). a_run(u) is u's output in this same, already patched, run, so
patching every edge reproduces the ablated run and patching none the clean one.
"""
from __future__ import annotations

import torch

from .activations import write_hooks
from .graph import Graph


def patch_hooks(model, graph: Graph, delta: torch.Tensor, weight: torch.Tensor) -> list:
    """Forward hooks for one patched run. `delta` enters holding a_abl [n_sources, B, P, d]; the
    source hooks subtract this run's outputs as they happen, so an input slot reads
    delta[:n] = a_abl − a_run for its n upstream sources. weight: [n_sources, n_inputs], bool or
    float (entries off the edge mask are ignored)."""
    hooks = write_hooks(model, graph, delta, sign=-1.0)
    w = (weight & graph.edge_mask if weight.dtype == torch.bool else weight * graph.edge_mask).to(delta)
    shifts: dict = {}  # per layer: [3H, B, P, d], shared by its q, k and v hooks

    def head_hook(layer, letter, n, cols):
        H = graph.cfg.n_heads

        def hook(x, hook):  # x: [B, P, H, d]; q, k and v of a layer run after all their sources
            if letter == "q" or layer not in shifts:
                shifts[layer] = (w[:n, cols].T @ delta[:n].reshape(n, -1)).reshape(3 * H, *x.shape[:2], -1)
            i = "qkv".index(letter)
            return x + shifts[layer][i * H:(i + 1) * H].permute(1, 2, 0, 3)
        return hook

    for layer in range(graph.cfg.n_layers):
        cols = graph.head_inputs(layer)
        n = int(graph.n_upstream[cols.start])
        if w[:n, cols].any():
            hooks += [(f"blocks.{layer}.hook_{c}_input", head_hook(layer, c, n, cols)) for c in "qkv"]
    for name, col in graph.residual_input_hooks():
        n = int(graph.n_upstream[col])
        if w[:n, col].any():
            def hook(x, hook, n=n, w_in=w[:n, col]):  # MLP input or logits: [B, P, d]
                return x + (w_in @ delta[:n].reshape(n, -1)).reshape(x.shape)

            hooks.append((name, hook))
    return hooks


def run_patched(model, graph: Graph, batch, abl: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Logits of the clean prompts with the edges in `weight` patched to `abl` (see module doc).
    Call inside `edge_hooks_enabled(model)`."""
    delta = abl.clone()
    with torch.no_grad(), model.hooks(fwd_hooks=patch_hooks(model, graph, delta, weight)):
        return model(batch.clean)
