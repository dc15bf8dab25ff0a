"""Source activations: the hooks that read them, and their ablated values (resample, zero, mean).

All source activations of one batch live in one tensor `[n_sources, B, P, d_model]` in forward
order, so the sources an input slot sees are the prefix `acts[:graph.n_upstream[slot]]`.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from . import arch
from .graph import Graph

ABLATIONS = ("resample", "zero", "mean")


@contextmanager
def edge_hooks_enabled(model, freeze: bool = False, split_qkv: bool = True):
    """Switch on the TransformerLens flags that expose split q/k/v and MLP inputs, and ungroup
    grouped-query attention (k and v computed per query head, so each head has its own k/v input,
    as MIB counts edges); with `freeze`, stop parameter gradients (attribution needs gradients of
    activations only). Everything is restored on exit."""
    cfg = model.cfg
    saved = (cfg.use_split_qkv_input, cfg.use_hook_mlp_in, cfg.ungroup_grouped_query_attention)
    grads = [p.requires_grad for p in model.parameters()] if freeze else []
    cfg.ungroup_grouped_query_attention = True
    model.set_use_split_qkv_input(split_qkv)
    if not cfg.attn_only:
        model.set_use_hook_mlp_in(True)
    if freeze:
        for p in model.parameters():
            p.requires_grad_(False)
    try:
        yield model
    finally:
        model.set_use_split_qkv_input(saved[0])
        model.cfg.use_hook_mlp_in = saved[1]
        model.cfg.ungroup_grouped_query_attention = saved[2]
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)


def write_hooks(model, graph: Graph, acts: torch.Tensor, sign: float = 1.0):
    """Forward hooks that store (sign=+1) or subtract (sign=−1) each source's output into `acts`."""

    def make(name, rows):
        W_O = model.blocks[int(name.split(".")[1])].attn.W_O if name.endswith("hook_z") else None

        def hook(x, hook):  # x: [B, P, d], or z: [B, P, H, d_head]
            x = x.detach()
            if W_O is None:
                if sign > 0:
                    acts[rows] = x
                else:
                    acts[rows] -= x
                return
            # head h writes z_h @ W_O[h]; one (fused) batched matmul into acts[rows] viewed [H, B·P, d]
            H, e = W_O.shape[:2]
            z = x.permute(2, 0, 1, 3).reshape(H, -1, e)
            out = acts[rows].view(H, z.shape[1], -1)
            if sign > 0:
                torch.bmm(z, W_O.detach(), out=out)
            else:
                out.baddbmm_(z, W_O.detach(), alpha=-1.0)
        return hook

    hooks = []
    for name, rows in graph.source_hooks():  # heads under a post-attention norm: arch.py splits the norm
        normed = arch.normed_head_writes(model, name, rows, acts, sign)
        hooks += normed if normed is not None else [(name, make(name, rows))]
    return hooks


def new_acts(model, graph: Graph, batch, fill: bool = True) -> torch.Tensor:
    """[n_sources, B, P, d_model], zeros (or uninitialized when a pass will write every row)."""
    B, P = batch.clean.shape
    make = torch.zeros if fill else torch.empty
    return make(graph.n_sources, B, P, model.cfg.d_model, dtype=model.cfg.dtype, device=batch.clean.device)


def ablated_acts(model, graph: Graph, batch, ablation: str, means: torch.Tensor | None = None):
    """What each source is replaced by: `[n_sources, B, P, d_model]`, and the corrupted logits
    (resample ablation only, else None)."""
    acts = new_acts(model, graph, batch, fill=ablation != "resample")
    if ablation == "resample":
        with torch.no_grad(), model.hooks(fwd_hooks=write_hooks(model, graph, acts)):
            logits = model(batch.corrupted)
        return acts, logits
    if ablation == "zero":
        return acts, None
    if ablation == "mean":
        if means is None:
            raise ValueError("mean ablation needs the source means (source_means)")
        acts += means[:, None, None, :]
        return acts, None
    raise ValueError(f"unknown ablation {ablation!r}; choose from {', '.join(ABLATIONS)}")


def source_means(model, graph: Graph, pairs, batch_size: int, device, split_lengths: bool) -> torch.Tensor:
    """[n_sources, d_model]: each source's mean output over the real positions of the corrupted
    prompts (the reference distribution the user supplied) — EAP-IG's `intervention='mean'`."""
    total = torch.zeros(graph.n_sources, model.cfg.d_model, dtype=model.cfg.dtype, device=device)
    count = 0
    for batch in pairs.batches(batch_size, device, split_lengths):
        acts = new_acts(model, graph, batch)
        with torch.no_grad(), model.hooks(fwd_hooks=write_hooks(model, graph, acts)):
            model(batch.corrupted)
        total += (acts * batch.mask[None, :, :, None]).sum((1, 2))
        count += int(batch.mask.sum())
    return total / count


def is_bidirectional(model) -> bool:
    return getattr(model.cfg, "attention_dir", "causal") != "causal"
