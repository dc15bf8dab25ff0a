"""Run the model with a set of edges patched: one forward pass, any set of edges.

An input slot v reads the residual stream, which is the sum of its upstream sources. Patching
edge u→v means v sees u's *ablated* output instead of u's output in this run:

    input_v ← input_v + Σ_u  w[u, v] · (a_abl(u) − a_run(u))          [B, P, (H,) d_model]

with w = 1 for a patched edge and 0 for a kept one (fractional w moves the edge part-way, which
the finite-difference tests use). a_run(u) is u's output in this same, already patched, run, so
patching every edge reproduces the ablated run and patching none the clean one.
"""
from __future__ import annotations

import torch

from .activations import write_hooks
from .graph import Graph


def patch_hooks(model, graph: Graph, abl: torch.Tensor, weight: torch.Tensor, run_acts: torch.Tensor) -> list:
    """Forward hooks for one patched run. abl, run_acts: [n_sources, B, P, d]; weight: [n_sources, n_inputs]
    (bool or float; entries off the edge mask are ignored). run_acts is filled as the run goes."""
    hooks = write_hooks(model, graph, run_acts)
    w = (weight & graph.edge_mask if weight.dtype == torch.bool else weight * graph.edge_mask).to(abl)
    for name, cols in graph.input_hooks():
        first = cols.start if isinstance(cols, slice) else cols
        n = int(graph.n_upstream[first])
        w_in = w[:n, cols]  # [n, H] for a head slot, [n] for an MLP or the logits
        if not w_in.any():
            continue

        def hook(x, hook, n=n, w_in=w_in):
            d = (abl[:n] - run_acts[:n]).reshape(n, -1)  # [n, B·P·d]
            if x.dim() == 4:  # [B, P, H, d]
                B, P, H, D = x.shape
                return x + (d.T @ w_in).reshape(B, P, D, H).permute(0, 1, 3, 2)
            return x + (d.T @ w_in).reshape(x.shape)

        hooks.append((name, hook))
    return hooks


def run_patched(model, graph: Graph, batch, abl: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Logits of the clean prompts with the edges in `weight` patched to `abl` (see module doc).
    Call inside `edge_hooks_enabled(model)`."""
    run_acts = torch.zeros_like(abl)
    with torch.no_grad(), model.hooks(fwd_hooks=patch_hooks(model, graph, abl, weight, run_acts)):
        return model(batch.clean)
