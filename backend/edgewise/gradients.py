"""Input-slot gradients from one backward pass, turned into edge scores as they arrive.

For every input slot v the scores gain  weight · Σ_{b,p,d} diff[u, b, p, d] · ∂metric/∂input_v[b, p, d]
for the upstream sources u (diff = a_abl − a_clean). MLP inputs and the logits read the residual
stream whole: their gradient is the tensor gradient at hook_mlp_in / hook_resid_post. Head h's q
input x reaches q_h = n(x) W_Q[h] + b through the head-input norm n, so

    ∂metric/∂x (q of head h) = J_n(x)ᵀ W'_h g_h,        g_h = ∂metric/∂q_h [B, P, d_head]

and for n(x) = x̂ ⊙ w + b (x̂ = (x − mean x)/σ; RMSNorm: x/σ) with W' = diag(w) W_Q:

    J_nᵀ W'_h g_h = (W'_h − mean_d W'_h) g_h / σ  −  x̂ · c_h,     c_h = (g_h/σ)·(q_h − q0_h) / d

(x̂ W'_h = q_h − q0_h, q0 = b W_Q + b_Q, so c_h needs no projection; RMSNorm keeps W' uncentred).
These per-head inputs U are exactly what autograd would compute (and sum) on its way back through
the projections and the norm, so a custom autograd function at the attention input hands
Σ_h U_h back to autograd as that input's gradient: the projection and norm backwards are not
run twice. One [3H(+2), B·P, d] buffer serves every layer in turn; each layer's q, k, v (and the
upstream part of its MLP and, last, the logits slot) are scored by ONE matmul with diff.

RelP (relevance.py) holds σ constant (the LN-rule): the c_h term goes, and with attention patterns
constant only the v slots receive gradients, so only they (and the MLP / logits slots) are scored.

Every reference a batch creates lives in `SlotGrads` and is dropped by `close()`: nothing of a batch
outlives it, even with Python's cyclic garbage collector off.
"""
from __future__ import annotations

import weakref

import torch

from .activations import HeadNorm, bmm_t, head_projection, matmul_t
from .graph import Graph


class SlotGrads:
    """The hooks of one gradient pass: scores[rows, :] += weight · diffᵀ ∂metric/∂inputs."""

    def __init__(self, model, graph: Graph, diff: torch.Tensor, scores: torch.Tensor, rows: slice,
                 weight: float, weights: "HeadWeights", acc: dict | None = None, relp: bool = False):
        self.model, self.graph, self.diff, self.scores = model, graph, diff, scores
        self.rows, self.weight, self.w = rows, weight, weights
        self.acc = acc  # layer -> Σ weight · U over gradient points sharing diff's rows: one matmul at the end
        self.relp = relp  # RelP's rules: σ constant, and patterns constant, so q and k get no gradient
        self.letters = "v" if relp else "qkv"
        self.H = graph.cfg.n_heads
        self.first = 2 * self.H if relp else 0  # first buffer row (and column of a layer's slots) scored
        self.extra = (0 if graph.cfg.attn_only else 1) + 1  # buffer rows after the 3H head slots: MLP, logits
        self.U = None        # [3H + extra, B·P, d], owned by one layer at a time
        self.owner = None    # that layer
        self.parts: set = set()
        self.x: dict = {}    # layer -> attention input (detached) while its gradients are pending
        self.out: dict = {}  # (layer, letter) -> TransformerLens's q / k / v (detached)

    # ---------------------------------------------------------------- forward hooks
    def hooks(self) -> list:
        g, hooks = self.graph, []
        for layer in range(g.cfg.n_layers):
            if self.head_rows(layer) is not None:
                hooks.append((f"blocks.{layer}.hook_resid_pre", self._keep_input))
                hooks += [(f"blocks.{layer}.attn.hook_{c}", self._wrap) for c in self.letters]
        for name, col in g.residual_input_hooks():
            if self._prefix_rows(col) is not None or self._rest_rows(col) is not None:
                hooks.append((name, self._grad_hook))
        return hooks

    def _keep_input(self, x, hook):
        self.x[hook.layer()] = x

    def _wrap(self, q, hook):
        layer, letter = hook.layer(), hook.name[-1]
        self.out[(layer, letter)] = q.detach()
        return _HandBack.apply(self.x[layer], q.detach(), self, (layer, letter))

    def _grad_hook(self, x, hook):
        if x.requires_grad:
            name = hook.name
            x.register_hook(lambda g: self._residual_grad(name, g))

    # ---------------------------------------------------------------- rows of diff each slot scores
    def head_rows(self, layer: int) -> slice | None:
        n = int(self.graph.n_upstream[self.graph.head_inputs(layer).start])
        r0, r1 = self.rows.start, min(self.rows.stop, n)
        return slice(r0, r1) if r1 > r0 else None

    def _prefix_rows(self, col: int) -> slice | None:
        """Rows of an MLP / logits slot scored in its layer's matmul (sources before that layer's heads)."""
        layer = self._layer_of(col)
        return self.head_rows(layer)

    def _rest_rows(self, col: int) -> slice | None:
        """The rest of its upstream sources (its own layer's heads, and MLP for the logits)."""
        layer = self._layer_of(col)
        n = int(self.graph.n_upstream[self.graph.head_inputs(layer).start])
        r0, r1 = max(self.rows.start, n), min(self.rows.stop, int(self.graph.n_upstream[col]))
        return slice(r0, r1) if r1 > r0 else None

    def _layer_of(self, col: int) -> int:
        g = self.graph
        return g.cfg.n_layers - 1 if col == g.logits_input else next(
            layer for layer in range(g.cfg.n_layers) if not g.cfg.attn_only and g.mlp_input(layer) == col)

    # ---------------------------------------------------------------- backward
    def _take(self, layer: int, like: torch.Tensor):
        """The shared buffer for `layer` (finishing the layer that held it)."""
        if self.owner == layer:
            return self.U
        if self.owner is not None:
            self._flush()
        B, P, d = like.shape[0], like.shape[1], self.model.cfg.d_model
        shape = (3 * self.H + self.extra, B * P, d)
        if self.U is None or self.U.shape != shape:
            self.U = torch.empty(shape, dtype=self.diff.dtype, device=self.diff.device)
        self.owner, self.parts = layer, set()
        return self.U

    def head_grad(self, key, g: torch.Tensor) -> torch.Tensor:
        """∂metric/∂q for one letter of a layer [B, P, H, d_head] → the attention input's gradient
        from those heads (Σ_h U_h, [B, P, d]); their U_h wait in the buffer for the layer's matmul."""
        layer, letter = key
        U = self._take(layer, g)
        H, (B, P) = self.H, g.shape[:2]
        i = "qkv".index(letter)
        Ul = U[i * H:(i + 1) * H]
        self.w.input_grads(layer, letter, self.x[layer].detach(), self.out[(layer, letter)], g, out=Ul,
                           constant_scale=self.relp)
        self.parts.add(letter)
        grad_x = Ul.sum(0).view(B, P, -1)
        if self._complete(layer):
            self._flush()
        return grad_x

    def _residual_grad(self, name: str, g: torch.Tensor):
        """MLP input or logits [B, P, d]: its own layer's sources now, the rest in that layer's matmul."""
        col = dict(self.graph.residual_input_hooks())[name]
        rest = self._rest_rows(col)
        g = g.detach()
        if rest is not None:
            n = rest.stop - rest.start
            self.scores[rest, col] += self.weight * (self.diff[rest].reshape(n, -1) @ g.reshape(-1)).to(self.scores.dtype)
        prefix = self._prefix_rows(col)
        if prefix is not None:
            layer = self._layer_of(col)
            U = self._take(layer, g)
            slot = "logits" if col == self.graph.logits_input else "mlp"
            U[3 * self.H + (1 if slot == "logits" and self.extra == 2 else 0)].view_as(g).copy_(g)
            self.parts.add(slot)
            if self._complete(layer):
                self._flush()

    def _complete(self, layer: int) -> bool:
        want = set(self.letters)
        if not self.graph.cfg.attn_only:
            want.add("mlp")
        if layer == self.graph.cfg.n_layers - 1:
            want.add("logits")
        return want <= self.parts

    def _flush(self):
        """One matmul scores the finished layer's q, k, v (and MLP / logits prefix) slots."""
        layer, U, H = self.owner, self.U, self.H
        if layer is None:
            return
        g = self.graph
        n_cols = 3 * H
        if not g.cfg.attn_only:
            n_cols += 1
        if layer == g.cfg.n_layers - 1:
            n_cols += 1
        for i, part in enumerate("qkv"):
            if part in self.letters and part not in self.parts:
                U[i * H:(i + 1) * H] = 0
        for k, part in enumerate((["mlp"] * (not g.cfg.attn_only) + ["logits"])[:n_cols - 3 * H]):
            if part not in self.parts:
                U[3 * H + k] = 0
        Uc = U[self.first:n_cols]  # the logits row sits after the MLP row; only the last layer scores it
        rows = self.head_rows(layer)
        if rows is not None and self.acc is not None:
            if layer in self.acc:
                self.acc[layer].add_(Uc, alpha=self.weight)
            else:
                self.acc[layer] = Uc.mul(self.weight)
        elif rows is not None:
            score_layer(g, self.diff, self.scores, layer, rows, Uc, self.weight, self.first)
        self.owner, self.parts = None, set()
        self.x.pop(layer, None)
        for c in "qkv":
            self.out.pop((layer, c), None)

    def close(self):
        """Score what is still pending and drop every reference this pass holds."""
        if self.owner is not None:
            self._flush()
        self.U = self.diff = self.scores = None
        self.x.clear()
        self.out.clear()


def score_layer(graph: Graph, diff, scores, layer: int, rows: slice, U: torch.Tensor, weight: float = 1.0,
                first: int = 0):
    """scores[rows, the layer's q, k, v (, MLP, logits) columns from the `first`] += weight · diff[rows] · U
    (one matmul)."""
    n, c0, n_cols = rows.stop - rows.start, graph.head_inputs(layer).start + first, U.shape[0]
    s = matmul_t(U.reshape(n_cols, -1), diff[rows].reshape(n, -1))  # [n_cols, n]
    scores[rows, c0:c0 + n_cols] += weight * s.T.to(scores.dtype)


class _HandBack(torch.autograd.Function):
    """Identity on q (k, v) forward; backward gives the attention input x the gradient
    Σ_h J_nᵀ W'_h g_h directly (module doc), and TransformerLens's own projection gets none."""

    @staticmethod
    def forward(ctx, x, q, grads, key):
        ctx.grads, ctx.key = grads, key
        return q.view_as(q)

    @staticmethod
    def backward(ctx, g):
        grads, ctx.grads = ctx.grads, None
        return grads.head_grad(ctx.key, g), None, None, None


class HeadWeights:
    """Per-layer projection weights as the head-input gradients use them (built once per model)."""

    def __init__(self, model, graph: Graph | None = None):
        self._model, self.graph = weakref.ref(model), graph or Graph.from_model(model)  # cached per model: no cycle
        self.norms = [HeadNorm.of(model, layer) for layer in range(self.graph.cfg.n_layers)]
        self.shortformer = model.cfg.positional_embedding_type == "shortformer"
        self._cache: dict = {}

    @property
    def model(self):
        return self._model()

    def layer(self, layer: int):
        """(W [3H, d, d_head] with the norm's weight folded in (centred over d for a LayerNorm),
        q0 [3H, d_head]: the projection of the norm's bias plus the projection's bias)."""
        if layer not in self._cache:
            norm = self.norms[layer]
            W_raw, W, q0 = head_projection(self.model, layer, norm)
            if norm.exact and norm.center:  # J_nᵀ's mean_d term, folded into the weights
                W = W - W.mean(1, keepdim=True)
            self._cache[layer] = (W.contiguous(), q0, W_raw)
        return self._cache[layer]

    def input_grads(self, layer: int, letter: str, x, q, g, out: torch.Tensor,
                    constant_scale: bool = False) -> torch.Tensor:
        """out ← U_h [H, B·P, d] = J_n(x)ᵀ W'_h g_h for the heads of one letter (module doc); with
        `constant_scale` (RelP's LN-rule) σ is a constant: J_nᵀ W'_h g_h = (W'_h − mean_d W'_h) g_h / σ."""
        norm = self.norms[layer]
        W, q0, W_raw = self.layer(layer)
        H = self.graph.cfg.n_heads
        i = "qkv".index(letter)
        B, P, _, e = g.shape
        Wl = W[i * H:(i + 1) * H]
        if not norm.exact:  # another norm: its exact Jacobian, by autograd
            if constant_scale:
                raise ValueError(f"relp: no LN-rule for block {layer}'s {type(norm.module).__name__}")
            U = torch.bmm(g.permute(2, 0, 1, 3).reshape(H, B * P, e), W_raw[i * H:(i + 1) * H].transpose(1, 2))
            _, vjp = torch.func.vjp(norm.module, x)
            return out.copy_(torch.vmap(vjp)(U.view(H, B, P, -1))[0].reshape(H, B * P, -1))
        if not norm.scale:  # no norm: the projection alone
            return bmm_t(g.permute(2, 0, 1, 3).reshape(H, B * P, e), Wl, out)
        xs = x - x.mean(-1, keepdim=True) if norm.center else x
        sigma = norm.sigma(xs).to(g.dtype)  # [B, P, 1]
        gs = g / sigma[..., None]
        U = bmm_t(gs.permute(2, 0, 1, 3).reshape(H, B * P, e), Wl, out)
        if constant_scale:
            return U
        base = q0[i * H:(i + 1) * H]
        if self.shortformer and letter != "v":  # q and k also read the positional embedding
            base = base + torch.einsum("pd,hde->phe", self.model.W_pos[:P].detach(), W_raw[i * H:(i + 1) * H])
        c = (gs * (q - base)).sum(-1) / x.shape[-1]  # [B, P, H]
        xhat = (xs / sigma).reshape(1, B * P, -1)
        U.addcmul_(xhat, c.permute(2, 0, 1).reshape(H, B * P, 1), value=-1.0)
        return U
