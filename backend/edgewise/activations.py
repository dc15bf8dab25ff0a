"""Source activations: the hooks that read them, and their ablated values (resample, zero, mean).

All source activations of one batch live in one tensor `[n_sources, B, P, d_model]` in forward
order, so the sources an input slot sees are the prefix `acts[:graph.n_upstream[slot]]`.
"""
from __future__ import annotations

import weakref
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from . import arch
from .graph import Graph

ABLATIONS = ("resample", "zero", "mean")


@contextmanager
def edge_hooks_enabled(model, freeze: bool = False, split_qkv: bool = False):
    """Switch on the TransformerLens flags the engine needs (MLP inputs; split q/k/v inputs only
    when asked: the engine itself never needs them), and ungroup grouped-query attention (k and v
    per query head, so each head has its own k/v input, as MIB counts edges); with `freeze`, stop
    parameter gradients (attribution needs gradients of activations only). Everything is restored on exit."""
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


_PER_MODEL: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def per_model(model, kind, build):
    """`build(model)` once per model and kind (weights prepared for the engine's passes), rebuilt
    when any parameter is replaced or modified in place."""
    stamp = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in model.parameters())
    cache = _PER_MODEL.setdefault(model, {})
    if kind not in cache or cache[kind][0] != stamp:
        cache[kind] = (stamp, build(model))
    return cache[kind][1]


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """Scores and metric sums: float32 or better whatever the model's dtype (float64 stays float64)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------- the engine's own matmuls on a CPU
# float32 on a CPU goes through oneDNN (torch's mkldnn linear), not MKL's sgemm: on the bench machine
# (AMD EPYC, one thread) 2.2× faster at the scoring shape (k = B·P·d ≈ 4e5, m ≈ 37, n ≤ 145: 0.20 s vs
# 0.46 s over GPT-2-small's 12 layers) and 1.9× for the per-head [B·P, d_head] × [d_head, d] products;
# the same float32 accumulation (its error against float64 is no larger). Elsewhere a plain matmul.
_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn(*ts: torch.Tensor) -> bool:
    # oneDNN refuses an empty inner dimension (plain matmul gives zeros): empty tensors take the plain path
    return _ONEDNN and all(t.device.type == "cpu" and t.dtype == torch.float32 and t.numel() for t in ts)


def matmul_t(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [m, k] @ b [n, k]ᵀ → [m, n]."""
    if _onednn(a, b):
        return torch.ops.mkldnn._linear_pointwise(a.contiguous(), b.contiguous(), None, "none", [], "")
    return a @ b.T


def bmm_t(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out[h] ← a[h] [m, k] @ b[h] [n, k]ᵀ for every h; returns out."""
    if not _onednn(a, b, out):
        return torch.bmm(a, b.transpose(1, 2), out=out)
    a, b = a.contiguous(), b.contiguous()
    for h in range(a.shape[0]):
        out[h].copy_(torch.ops.mkldnn._linear_pointwise(a[h], b[h], None, "none", [], ""))
    return out


# ---------------------------------------------------------------- the norm in front of a layer's heads
head_input_norm = arch.head_input_norm  # identity for post-norm blocks (OLMo-2/3), else ln1


@dataclass(frozen=True)
class HeadNorm:
    """A layer's head-input norm as the engine uses it:  n(x) = (x − [mean x]) / σ ⊙ w + b,
    σ = sqrt(mean_d((x − [mean x])²) + eps). `center`: LayerNorm (subtracts the mean), else RMSNorm;
    `scale` False: no norm at all; `exact` False: an unknown norm, used through its module."""

    module: torch.nn.Module
    center: bool
    scale: bool
    exact: bool
    eps: float
    w: torch.Tensor | None  # None: 1
    b: torch.Tensor | None  # None: 0

    @classmethod
    def of(cls, model, layer: int) -> "HeadNorm":
        ln = head_input_norm(model, layer)
        kind = type(ln).__name__
        w, b = getattr(ln, "w", None), getattr(ln, "b", None)
        w = w.detach() if isinstance(w, torch.Tensor) else None
        b = b.detach() if isinstance(b, torch.Tensor) else None
        eps = float(getattr(ln, "eps", 0.0))
        if kind in ("LayerNorm", "LayerNormPre"):
            return cls(ln, True, True, True, eps, w if kind == "LayerNorm" else None, b if kind == "LayerNorm" else None)
        if kind in ("RMSNorm", "RMSNormPre"):
            return cls(ln, False, True, True, eps, w if kind == "RMSNorm" else None, None)
        if isinstance(ln, torch.nn.Identity):
            return cls(ln, False, False, True, 0.0, None, None)
        return cls(ln, False, True, False, eps, None, None)

    def sigma(self, x: torch.Tensor) -> torch.Tensor:
        """σ [..., 1] of an input already centred when `center` (accumulated in float32 or better)."""
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=accumulation_dtype(x.dtype))
        return (norm.square() / x.shape[-1] + self.eps).sqrt()


def head_projection(model, layer: int, norm: HeadNorm):
    """(W [3H, d, d_head], W' = diag(w) W, c [3H, d_head]) of a layer's q, k, v heads in turn, with
    q_h = n(x) W_h + b_h = x̂ W'_h + c_h: c folds the norm's bias in (b_n W + b). W_K / W_V have one
    matrix per query head (grouped-query attention ungrouped)."""
    attn = model.blocks[layer].attn
    W = torch.cat([attn.W_Q, attn.W_K, attn.W_V]).detach()
    c = torch.cat([attn.b_Q, attn.b_K, attn.b_V]).detach()
    if not norm.exact:
        return W, W, c
    if norm.b is not None:
        c = c + torch.einsum("d,hde->he", norm.b, W)
    return W, (W if norm.w is None else W * norm.w[:, None]), c


def residual_norms_center(model) -> bool:
    """True when every reader of the residual stream (head inputs, MLP inputs, logits) normalizes
    with a LayerNorm: then a source's mean over d_model never matters, and the patched forward
    keeps its differences centred (one pass less per head slot)."""
    norms = [head_input_norm(model, layer) for layer in range(model.cfg.n_layers)]
    if not model.cfg.attn_only:
        norms += [getattr(b, "ln2", None) for b in model.blocks]
    norms.append(getattr(model, "ln_final", None))
    return all(type(n).__name__ in ("LayerNorm", "LayerNormPre") for n in norms)


# ---------------------------------------------------------------- writing source outputs
def write_hooks(model, graph: Graph, acts: torch.Tensor, sign: float = 1.0, z_store: dict | None = None,
                z_abl: dict | None = None):
    """Forward hooks that store (sign=+1) or subtract (sign=−1) each source's output into `acts`.
    Heads write z_h W_O[h]. With `z_store` (sign +1) heads keep their z there instead; with `z_abl`
    (sign −1) heads whose ablated z is there write a_abl − a_run = (z_abl − z) W_O in one matmul."""

    def make(name, rows):
        layer = int(name.split(".")[1])
        W_O = model.blocks[layer].attn.W_O if name.endswith("hook_z") else None

        def hook(x, hook):  # x: [B, P, d], or z: [B, P, H, d_head]
            x = x.detach()
            if W_O is None:
                if sign > 0:
                    acts[rows] = x
                else:
                    acts[rows] -= x
                return
            if sign > 0 and z_store is not None:
                z_store[layer] = x
                return
            # head h writes z_h @ W_O[h]; one (fused) batched matmul into acts[rows] viewed [H, B·P, d]
            H, e = W_O.shape[:2]
            if sign < 0 and z_abl is not None and layer in z_abl:
                x, sign_ = z_abl[layer] - x, 1.0
            else:
                sign_ = sign
            z = x.permute(2, 0, 1, 3).reshape(H, -1, e)
            out = acts[rows].view(H, z.shape[1], -1)
            if sign_ > 0:
                bmm_t(z, W_O.detach().transpose(1, 2), out)
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


def ablated_acts(model, graph: Graph, batch, ablation: str, means: torch.Tensor | None = None,
                 z_store: dict | None = None):
    """What each source is replaced by: `[n_sources, B, P, d_model]`, and the corrupted logits
    (resample ablation only, else None). With `z_store` (resample), heads keep their z there and
    leave their rows unwritten (write_hooks' z_abl then fills them with a_abl − a_clean)."""
    acts = new_acts(model, graph, batch, fill=ablation != "resample")
    if ablation == "resample":
        with torch.no_grad(), model.hooks(fwd_hooks=write_hooks(model, graph, acts, z_store=z_store)):
            logits = model(batch.corrupted)
        return acts, logits
    if ablation == "zero":
        return acts, None
    if ablation == "mean":
        if means is None:
            raise ValueError("mean ablation needs the source means (source_means)")
        acts += means.to(acts.dtype)[:, None, None, :]
        return acts, None
    raise ValueError(f"unknown ablation {ablation!r}; choose from {', '.join(ABLATIONS)}")


def source_mean_sums(model, graph: Graph, pairs, chunks, device) -> tuple[torch.Tensor, int]:
    """Seam for sharding: (Σ over the real positions of the corrupted prompts of each source's
    output [n_sources, d_model], in float32 or better; the number of positions), over the batches
    `chunks` (lists of pair indices, as PromptPairs._chunks makes them). Shards add their sums and
    counts; source_means = total / count."""
    total = torch.zeros(graph.n_sources, model.cfg.d_model, dtype=accumulation_dtype(model.cfg.dtype), device=device)
    count = 0
    for idx in chunks:
        batch = pairs._batch(idx, device)
        acts = new_acts(model, graph, batch)
        with torch.no_grad(), model.hooks(fwd_hooks=write_hooks(model, graph, acts)):
            model(batch.corrupted)
        total += torch.einsum("sbpd,bp->sd", acts.to(total.dtype), batch.mask.to(total.dtype))
        count += int(batch.mask.sum())
        del acts, batch
    return total, count


def source_means(model, graph: Graph, pairs, batch_size: int, device, split_lengths: bool) -> torch.Tensor:
    """[n_sources, d_model]: each source's mean output over the real positions of the corrupted
    prompts (the reference distribution the user supplied) — EAP-IG's `intervention='mean'`."""
    total, count = source_mean_sums(model, graph, pairs, pairs._chunks(batch_size, split_lengths), device)
    return (total / count).to(model.cfg.dtype)


def is_bidirectional(model) -> bool:
    return getattr(model.cfg, "attention_dir", "causal") != "causal"
