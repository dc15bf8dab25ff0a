"""Run the model with a set of edges patched: one forward pass, any set of edges, several circuits at once.

An input slot v reads the residual stream x, the sum of its upstream sources (plus constant biases).
Patching edge u→v means v sees u's *ablated* output instead of u's output in this run:

    input_v = x + Σ_u w[u, v] (a_abl(u) − a_run(u)) = x + Σ_u w[u, v] δ_u            [B, P, d_model]

with w = 1 for a patched (removed) edge, 0 for a kept one (fractional w moves it part-way, which the
finite-difference tests use). a_run is this same, already patched, run, so patching every edge
reproduces the ablated run and patching none the clean one.

How it stays near a plain forward (TransformerLens's split q/k/v inputs run ln1 3·n_heads times per
layer and cost ~1.3× on their own):
  - per layer the head slots are patched against whichever base leaves fewer of them to compute:
    the clean input x (slots with a removed edge deviate) or the fully ablated input x + D,
    D = Σ_u δ_u (slots with a kept edge deviate; ln1's hook hands TransformerLens n(x + D));
  - ONE matmul over the δ rows gives the shift s of every deviating slot, plus the upstream part of
    the MLP (and logits) slot, a few tokens at a time so norms and projections read it from cache;
    per circuit and slot s is Σ_removed w δ or D − Σ_kept (1 − w) δ (fewer terms), and on a CPU a
    layer whose weights are mostly zero gathers its terms (embedding_bag) instead of a dense matmul;
    δ is stored step-major (each step's rows contiguous, read in place) in a buffer the batch keeps;
  - a deviating slot's q = n(b + s) W_q + c (n the head-input norm, c = b_n W_q + b_q) needs no
    per-head norm copy. Few deviating slots: from TransformerLens's q_b of the base b,
        q = q_b + (q_b − c)(1/r − 1) + s W' / (σ_b r),   r² = 1 + (2 b·s + |s|²) / (d σ_b²)
    (W' = diag(w) W_q), so s = 0 gives q_b bit for bit; many: q = (b + s) W' / σ + c for every slot
    of the layer, and TransformerLens projects nothing (ln1's hook hands it zero rows);
  - δ is kept only for sources some slot reads (in forward order, so each layer reads a prefix),
    centred when every norm is a LayerNorm (the norm ignores the mean); D follows hook_attn_out;
  - C circuits run as one batch of C·B prompts.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import arch
from .activations import HeadNorm, head_projection, residual_norms_center
from .graph import Graph
from .patch_plan import Plan, silent_sources


CHUNK = 4 << 20  # bytes of slot inputs per step of a layer's matmul (they stay in cache for norm and projection)


@dataclass
class Ablated:
    """A batch's ablated activations as the patched forward reads them (Patcher.prepare)."""

    acts: torch.Tensor       # [n_sources, B, P, d], centred when the norms centre
    head_sums: torch.Tensor  # [n_layers, B·P, d]: Σ over each layer's heads (D's update)
    scratch: torch.Tensor | None = None  # the δ buffer its patched forwards reuse (Patcher.scratch)


class Patcher:
    """Patched forwards of one model (its projection weights prepared once)."""

    def __init__(self, model, graph: Graph | None = None):
        self._model, self.graph = weakref.ref(model), graph or Graph.from_model(model)  # cached per model: no cycle
        self.center = residual_norms_center(model)
        self.norms = [HeadNorm.of(model, layer) for layer in range(model.cfg.n_layers)]
        self.shortformer = model.cfg.positional_embedding_type == "shortformer"
        self.silent = silent_sources(model, self.graph)
        # a norm after attention (Gemma-2/3, OLMo-2/3): a head writes w ⊙ (z_h W_O[h] + b_O/H) / σ_run (arch.py)
        self.post = [arch.post_attention_norm(model, layer) for layer in range(model.cfg.n_layers)]
        self._weights: dict[int, tuple] = {}
        self._scratch = None  # weak reference to the δ buffer the live batches share

    @property
    def model(self):
        return self._model()

    def prepare(self, abl: torch.Tensor) -> Ablated:
        """Once per batch: the ablated activations [n_sources, B, P, d] ready for many circuits."""
        acts = abl - abl.mean(-1, keepdim=True) if self.center else abl
        g = self.graph
        sums = torch.stack([acts[g.head_sources(layer)].sum(0).flatten(0, 1) for layer in range(g.cfg.n_layers)])
        return Ablated(acts, sums)

    def scratch(self, abl: Ablated, shape) -> torch.Tensor:
        """The δ buffer of a patched forward, uninitialised. New memory costs a page fault per 4 KiB
        at its first write (0.05-0.07 of a forward on GPT-2-small shape, CPU), so the batch keeps one
        for all its forwards and frees it with itself; batches alive at once (an evaluator's cache)
        share it, as forwards run one at a time."""
        n, buf = torch.Size(shape).numel(), abl.scratch
        if buf is None or buf.numel() < n:
            buf = self._scratch() if self._scratch is not None else None
            if buf is None or buf.numel() < n or (buf.dtype, buf.device) != (abl.acts.dtype, abl.acts.device):
                buf = torch.empty(n, dtype=abl.acts.dtype, device=abl.acts.device)
                self._scratch = weakref.ref(buf)
            abl.scratch = buf
        return buf[:n].view(shape)

    def weights(self, layer: int):
        """(W' [3H, d, d_head], c [3H, d_head], W_O [H, d_head, d], W [3H, d, d_head]) of a layer:
        q, k, v heads in turn; W' folds the norm's weight in, c is the projection of its bias plus
        the projection's bias; W_O centred over d_model when the norms centre."""
        if layer not in self._weights:
            W_raw, W, c = head_projection(self.model, layer, self.norms[layer])
            W_O = self.model.blocks[layer].attn.W_O.detach()
            if self.center:  # a head's write z W_O then has zero mean over d_model
                W_O = W_O - W_O.mean(-1, keepdim=True)
            self._weights[layer] = (W.contiguous(), c, W_O.contiguous(), W_raw)
        return self._weights[layer]

    def logits(self, batch, abl: Ablated, removed: torch.Tensor) -> torch.Tensor:
        """Logits [C, B, P, vocab] of the clean prompts with each circuit's edges patched.
        abl: from `prepare`; removed: [C, n_sources, n_inputs] (or [n_sources, n_inputs]), bool or
        float, how far each edge is moved to its ablated source (entries off the edge mask ignored)."""
        removed = removed[None] if removed.dim() == 2 else removed
        C = removed.shape[0]
        tokens = batch.clean.repeat(C, 1) if C > 1 else batch.clean
        run = _Run(self, Plan(self, removed), abl, tokens.shape)
        try:
            with torch.no_grad(), self.model.hooks(fwd_hooks=run.hooks()):
                out = self.model(tokens)
        finally:
            run.close()
        return out.view(C, *batch.clean.shape, -1)


def token_step(n_tokens: int, n_cols: int, d: int, size: int) -> int:
    """Tokens per step of the layers' matmuls: CHUNK bytes of slot inputs, a divisor of the
    B·P tokens (each step's source rows are then one contiguous block of buf), else all of them."""
    target = max(1, CHUNK // max(1, n_cols * d * size))
    if n_tokens <= target:
        return n_tokens
    T = max(t for t in range(1, target + 1) if n_tokens % t == 0)
    return T if 4 * T >= target else n_tokens


class _Run:
    """The hooks of one patched forward. buf [C, n_steps, 1 + kept rows, T, d], the B·P tokens in
    steps of T: row 0 the running D = Σ δ, then δ of each source some slot reads; a step's rows
    are one contiguous block (the layer's matmul, or its gather, reads them in place)."""

    def __init__(self, p: Patcher, plan: Plan, abl: Ablated, shape):
        self.p, self.plan, self.abl = p, plan, abl
        CB, P = shape
        self.B = abl.acts.shape[1]
        self.C, self.P, self.BP, self.d = CB // self.B, P, self.B * P, p.model.cfg.d_model
        n_cols = max([lp["Wt"].shape[1] for lp in plan.layers if lp["Wt"] is not None], default=1)
        self.T = token_step(self.BP, n_cols, self.d, abl.acts.element_size())
        self.nk = self.BP // self.T
        shape = (self.C, self.nk, 1 + plan.n_rows, self.T, self.d)
        self.buf = p.scratch(abl, shape)
        self.buf[:, :, 0].zero_()
        self.y = {}       # the current layer's MLP / logits shifts [C, B·P, d]
        self.heads = {}   # the current layer's deviating slots: projections, 1/r, σ_b
        self.base = None  # n(x + D) of a kept-edge layer, for ln1's hook

    def close(self):
        self.buf = self.base = self.abl = None
        self.y, self.heads = {}, {}

    def steps(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., B·P, d] as [..., n_steps, T, d], the layout of a row of buf (a view of x when contiguous)."""
        return x.reshape(*x.shape[:-2], self.nk, self.T, self.d)

    def hooks(self) -> list:
        g, plan = self.p.graph, self.plan
        hooks = []
        for layer, lp in enumerate(plan.layers):
            hooks.append((f"blocks.{layer}.hook_resid_pre", self._pre(layer)))
            if lp["direct"]:
                hooks.append((f"blocks.{layer}.ln1.hook_normalized", self._nothing))
            elif lp["kept_mode"]:
                hooks.append((f"blocks.{layer}.ln1.hook_normalized", self._base))
            for i, letter in enumerate("qkv"):
                if len(lp["letters"][i]) or lp["direct"]:
                    hooks.append((f"blocks.{layer}.attn.hook_{letter}", self._replace(layer, i)))
            if bool(plan.needed[g.head_sources(layer)].any()):
                hooks += self._write_heads(layer)
            if plan.use_D:
                hooks.append((f"blocks.{layer}.hook_attn_out", self._heads_into_D(layer)))
            if not g.cfg.attn_only:
                if lp.get("mlp_on"):
                    hooks.append((f"blocks.{layer}.hook_mlp_in", self._add(lp, "mlp")))
                hooks.append((f"blocks.{layer}.hook_mlp_out", self._write_row(g.mlp_source(layer))))
        if plan.layers[-1].get("logits_on"):
            hooks.append((f"blocks.{g.cfg.n_layers - 1}.hook_resid_post", self._add(plan.layers[-1], "logits")))
        return hooks

    # ---- δ = a_abl − a_run, and D = Σ δ
    def _put(self, row: int, run: torch.Tensor):
        """Source `row`'s output in this run [C·B, P, d] (centred like abl when the norms centre)."""
        keep, use_D = bool(self.plan.needed[row]), self.plan.use_D
        if not (keep or use_D):
            return
        run = self.steps(run.reshape(self.C, self.BP, self.d))
        out = self.buf[:, :, 1 + int(self.plan.compact[row])] if keep else torch.empty_like(run)
        torch.sub(self.steps(self.abl.acts[row].reshape(1, self.BP, self.d)), run, out=out)
        if self.p.center:
            out += run.mean(-1, keepdim=True)
        if use_D:
            self.buf[:, :, 0] += out

    def _write_row(self, row: int):
        def hook(x, hook):
            self._put(row, x)
        return hook

    def _write_heads(self, layer: int) -> list:
        heads = self.p.graph.head_sources(layer)
        sel = self.plan.needed[heads].nonzero().flatten()
        every = len(sel) == heads.stop - heads.start
        r0 = 1 + int(self.plan.compact[heads.start + int(sel[0])])
        abl = (self.abl.acts[heads] if every else self.abl.acts[heads][sel]).reshape(len(sel), self.BP, self.d)
        if self.p.post[layer] is not None:
            return self._write_normed_heads(layer, sel, every, r0, abl)
        W_O = self.p.weights(layer)[2] if every else self.p.weights(layer)[2][sel]
        H, e = len(sel), W_O.shape[1]

        def hook(z, hook):  # z [C·B, P, H, d_head]; δ_h = a_abl(h) − z_h W_O[h] for the heads kept
            z = z.reshape(self.C, self.BP, -1, e)
            z = z if every else z[:, :, sel.to(z.device)]
            T = self.T
            for c in range(self.C):
                zc = z[c].transpose(0, 1)
                for k in range(self.nk):
                    t = slice(k * T, (k + 1) * T)
                    torch.baddbmm(abl[:, t], zc[:, t], W_O, alpha=-1.0, out=self.buf[c, k, r0:r0 + H])
        return [(f"blocks.{layer}.attn.hook_z", hook)]

    def _write_normed_heads(self, layer: int, sel, every: bool, r0: int, abl) -> list:
        """Heads under a post-attention norm: δ_h = a_abl(h) − w ⊙ (z_h W_O[h] + b_O/H) / σ, written
        once the norm's scale σ of this run is known (its hook_scale follows hook_z)."""
        prefix, norm = self.p.post[layer]
        attn = self.p.model.blocks[layer].attn
        W_O = attn.W_O.detach() if every else attn.W_O.detach()[sel]
        H, e = len(sel), W_O.shape[1]
        b = attn.b_O.detach() / attn.W_O.shape[0]
        w = norm.w.detach()
        state = {}

        def keep_z(z, hook):
            state["z"] = z.reshape(self.C, self.BP, -1, e)

        def write(scale, hook):  # scale: σ [C·B, P, 1]
            z = state.pop("z")
            z = z if every else z[:, :, sel.to(z.device)]
            sigma = scale.reshape(self.C, self.BP, 1)
            for c in range(self.C):
                heads = torch.bmm(z[c].transpose(0, 1), W_O) + b
                torch.sub(self.steps(abl), self.steps(heads / sigma[c] * w), out=self.buf[c, :, r0:r0 + H].transpose(0, 1))
        return [(f"blocks.{layer}.attn.hook_z", keep_z), (f"{prefix}.hook_scale", write)]

    def _heads_into_D(self, layer: int):
        # Σ_h a_run(h) = attn_out − b_O; under a post-attention norm the heads' writes hold b_O (b_O/H each)
        b_O = self.p.model.blocks[layer].attn.b_O.detach() * (self.p.post[layer] is None)

        def hook(out, hook):  # D += Σ_h (a_abl(h) − a_run(h))
            run = (out.reshape(self.C, self.BP, self.d) - b_O)
            if self.p.center:
                run = run - run.mean(-1, keepdim=True)
            self.buf[:, :, 0] += self.steps(self.abl.head_sums[layer] - run)
        return hook

    # ---- a layer's matmul, and the slots it serves
    def _base(self, x, hook):
        return self.base.view_as(x)

    @staticmethod
    def _nothing(x, hook):
        """ln1's output for a layer whose q/k/v are all computed here: TransformerLens projects no rows."""
        return x[:0]

    def _pre(self, layer: int):
        lp, norm = self.plan.layers[layer], self.p.norms[layer]

        def hook(x, hook):  # x: resid_pre [C·B, P, d]
            if layer == 0:
                self._put(0, x)  # the input node's δ
            if lp["Wt"] is None and not lp["kept_mode"]:
                return
            b = x.reshape(self.C, self.BP, self.d)
            if lp["kept_mode"]:
                b = (self.steps(b) + self.buf[:, :, 0]).view(b.shape)
            bc = b - b.mean(-1, keepdim=True) if norm.center else b
            sigma = norm.sigma(bc) if norm.scale else None  # σ_b [C, B·P, 1]
            if lp["kept_mode"] and not lp["direct"]:  # TransformerLens projects n(x + D) for the other slots
                self.base = bc / sigma.to(bc.dtype)
            if lp["Wt"] is not None:
                self._layer_matmul(layer, lp, bc, sigma)
        return hook

    def _layer_matmul(self, layer: int, lp: dict, bc: torch.Tensor, sigma):
        """The layer's matmul, a few tokens at a time so each slot's input stays in cache while its
        norm and projection are taken (module doc); fills self.heads and the MLP / logits shifts."""
        norm, C, BP, d = self.p.norms[layer], self.C, self.BP, self.d
        W, _, _, W_raw = self.p.weights(layer)
        Wt, n, dev = lp["Wt"], lp["n_dev"], lp["dev"]
        rows, e = lp["n_rows"], W.shape[2]
        Wd = (W if norm.exact else W_raw) if n == len(W) else (W if norm.exact else W_raw)[dev]
        proj = torch.empty(C, n, BP, e, dtype=bc.dtype, device=bc.device)
        inv_r = torch.empty(C, n, BP, dtype=sigma.dtype, device=bc.device) if norm.scale and n else None
        extra = [k for k in ("mlp", "logits") if k in lp]
        self.y = {k: torch.empty(C, BP, d, dtype=bc.dtype, device=bc.device) for k in extra}
        T = self.T
        for ci in range(C):
            terms = lp["terms"][ci] if lp["terms"] is not None else None
            for step in range(self.nk):
                t0, t1 = step * T, (step + 1) * T
                src = self.buf[ci, step, :rows].view(rows, T * d)  # contiguous
                y = (torch.mm(Wt[ci], src) if terms is None else  # few terms: a gather (patch_plan.sparse)
                     F.embedding_bag(terms[0], src, terms[1], mode="sum", per_sample_weights=terms[2])).view(-1, T, d)
                for k in extra:
                    self.y[k][ci, t0:t1] = y[lp[k]]
                if not n:
                    continue
                s, b, out = y[:n], bc[ci, t0:t1], proj[ci, :, t0:t1]
                if norm.center and not self.p.center:
                    s -= s.mean(-1, keepdim=True)
                if not norm.exact:  # an unknown norm: through its module
                    torch.bmm(norm.module(s + b), Wd, out=out)
                elif lp["direct"]:  # q = (b + s) W' / σ + c
                    s += b
                    torch.bmm(s, Wd, out=out)
                    inv_r[ci, :, t0:t1] = 1 / norm.sigma(s)[..., 0]
                else:  # s W', and 1/r with r² = 1 + (2 b·s + |s|²) / (d σ_b²)
                    torch.bmm(s, Wd, out=out)
                    if inv_r is not None:
                        ss = torch.linalg.vector_norm(s, dim=-1, dtype=inv_r.dtype).square()
                        bs = (s * b).sum(-1, dtype=inv_r.dtype)
                        inv_r[ci, :, t0:t1] = (1 + (2 * bs + ss) / (d * sigma[ci, t0:t1, 0].square())).rsqrt()
        self.heads = {"proj": proj, "inv_r": inv_r, "sigma": sigma}
        if lp["direct"] and len(lp["rest"]):  # slots reading the base unchanged: q = b W' / σ_b + c
            self.heads["rest"] = torch.matmul(bc[:, None], W[lp["rest"]][None]) / sigma[:, None].to(bc.dtype)

    def _replace(self, layer: int, i: int):
        lp = self.plan.layers[layer]
        idx, norm = lp["letters"][i], self.p.norms[layer]
        H = self.p.graph.cfg.n_heads
        c = self.p.weights(layer)[1]
        pos = ((lp["dev"] >= i * H) & (lp["dev"] < (i + 1) * H)).nonzero().flatten()  # idx's rows in proj
        rest_pos = ((lp["rest"] >= i * H) & (lp["rest"] < (i + 1) * H)).nonzero().flatten()
        rest_idx = lp["rest"][rest_pos] - i * H

        def hook(q, hook):  # q [C·B, P, H, d_head]: TransformerLens's projection of the base input
            h = self.heads
            proj = h["proj"][:, pos].transpose(1, 2)  # [C, B·P, k, d_head]
            if lp["direct"]:  # TransformerLens projected nothing: every head of this letter from here
                out = torch.empty(self.C, self.BP, H, proj.shape[-1], dtype=proj.dtype, device=proj.device)
                out[:, :, idx] = proj * h["inv_r"][:, pos].transpose(1, 2)[..., None].to(proj.dtype) + c[i * H + idx]
                if len(rest_idx):
                    out[:, :, rest_idx] = h["rest"][:, rest_pos].transpose(1, 2) + c[i * H + rest_idx]
                return out.view(self.C * self.B, self.P, H, -1)
            qv = q.view(self.C, self.BP, q.shape[2], q.shape[3])
            if not norm.exact:  # n(b + s) W + b_q
                new = proj + c[i * H + idx]
            elif h["inv_r"] is not None:  # q_b + (q_b − c)(1/r − 1) + s W' / (σ_b r)
                new = qv[:, :, idx]
                inv_r = h["inv_r"][:, pos].transpose(1, 2)[..., None]
                new = new + (new - self._offset(layer, i, idx)) * (inv_r - 1).to(new.dtype) \
                    + proj * (inv_r / h["sigma"][:, :, None]).to(proj.dtype)
            else:  # no norm: q_b + s W
                new = qv[:, :, idx] + proj
            qv.index_copy_(2, idx, new.to(q.dtype))
            return q
        return hook

    def _offset(self, layer: int, i: int, idx) -> torch.Tensor:
        """c of the heads idx of letter i: [H', d_head], or [B·P, H', d_head] with the positional
        embedding a shortformer model adds to q and k after the norm."""
        H = self.p.graph.cfg.n_heads
        _, c, _, W_raw = self.p.weights(layer)
        c = c[i * H + idx]
        if self.p.shortformer and i < 2:
            pos = self.p.model.W_pos[:self.P].detach()
            pos = torch.einsum("pd,hde->phe", pos, W_raw[i * H + idx])  # [P, H', d_head]
            c = (c + pos).expand(self.B, *pos.shape).reshape(self.BP, *c.shape[-2:])
        return c

    def _add(self, lp: dict, key: str):
        """MLP input or logits: x (+ D) + the slot's matmul column + the sources written after the matmul."""

        def hook(x, hook):
            xs = x.view(self.C, self.BP, self.d)
            if lp[key + "_D"]:  # the kept-edge base: every upstream source ablated
                self.steps(xs).add_(self.buf[:, :, 0])
            if key in lp:
                xs += self.y[key]
            rest = lp.get(key + "_rest")
            if rest is not None:
                w, r0, n = rest
                for c in range(self.C):
                    xs[c].view(self.nk, -1).add_(w[c] @ self.buf[c, :, r0:r0 + n].flatten(2))
            return x
        return hook


def run_patched(model, graph: Graph, batch, abl: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Logits of the clean prompts with the edges in `weight` patched to `abl` (see module doc);
    weight [n_sources, n_inputs] gives [B, P, vocab], [C, n_sources, n_inputs] gives [C, B, P, vocab].
    Call inside `edge_hooks_enabled(model)`."""
    p = Patcher(model, graph)
    out = p.logits(batch, p.prepare(abl), weight)
    return out[0] if weight.dim() == 2 else out
