"""RelP, relevance patching (Rezaei Jafari, Eberle, Khakzar & Nanda 2025, arXiv 2508.21258): EAP
with the gradient replaced by the propagation coefficients of layer-wise relevance propagation (LRP),

    score(u→v) = mean over pairs of Σ_pos (a_abl(u) − a_clean(u)) · c_v,

c_v = ∂metric/∂input_v taken on the clean run through a backward pass that uses these rules
(the forward pass is untouched, so the cost is EAP's):
  LN-rule        every LayerNorm / RMSNorm scale σ is a constant:  ∂n/∂x = diag(w)(I − 11ᵀ/d)/σ
                 (RMSNorm: diag(w)/σ); the centring stays, the σ(x) term of the Jacobian goes
  AH-rule        attention patterns are constants: relevance reaches a head through its values only,
                 so every query and key edge scores exactly 0
  identity rule  an elementwise nonlinearity y = f(x) passes y on unchanged:  ∂y/∂x ← f(x)/x
                 (f′(0) where x = 0)
  half rule      a gated MLP's product y = f(g)·u + b splits evenly between its factors:
                 ∂y/∂g ← ½ (f(g)/g) u,  ∂y/∂u ← ½ f(g)
Put differently, RelP is EAP on the model *frozen* at the clean run — σ, the patterns and the
ratios f(x)/x held at their clean values, gates split in half — which is affine in every edge's
input, so there RelP equals exact patching (tests/test_relevance.py checks exactly that).
The rule set is the paper's table of transformer rules (its code: github.com/FarnoushRJ/RelP);
that code's default list leaves the AH-rule out, edgewise applies all four.
"""
from __future__ import annotations

import torch

from .activations import HeadNorm, accumulation_dtype

# MLP modules of TransformerLens 3.9 whose nonlinearity these rules cover; mixtures of experts
# (a router's softmax and top-k choose the experts) have no rule here
_PLAIN, _GATED = ("MLP",), ("GatedMLP",)


def check_model(model) -> None:
    """ValueError naming the layer and module where RelP has no rule for this model."""
    for layer, block in enumerate(model.blocks):
        norm = HeadNorm.of(model, layer)
        if not norm.exact:
            raise ValueError(f"relp: block {layer}'s head-input norm is a {type(norm.module).__name__}; the LN-rule "
                             "is defined here for LayerNorm and RMSNorm only")
        if model.cfg.attn_only:
            continue
        kind = type(block.mlp).__name__
        if kind not in _PLAIN + _GATED:
            raise ValueError(f"relp: block {layer}'s MLP is a {kind} (a mixture of experts or another module); "
                             "RelP's rules cover plain and gated MLPs only")


class LRPRules:
    """Forward hooks of one gradient pass that change no value and give the backward RelP's
    Jacobians (module doc). `close()` drops what the pass kept."""

    def __init__(self, model):
        self.model = model
        self.kept: dict = {}  # (layer, "pre" | "lin") -> that MLP input of this pass, with its autograd graph
        self._f0: dict = {}  # layer -> f′(0), the identity rule's ratio where x = 0

    def hooks(self) -> list:
        hooks = [(name, _constant) for name in self.model.hook_dict if name.endswith("hook_scale")]
        for layer, block in enumerate(self.model.blocks):
            hooks.append((f"blocks.{layer}.attn.hook_pattern", _constant))
            if self.model.cfg.attn_only:
                continue
            mlp = f"blocks.{layer}.mlp"
            hooks.append((f"{mlp}.hook_pre", self._keep))
            if self.model.cfg.is_layer_norm_activation():  # SoLU-LN: f(x) at hook_mid, its norm's σ is constant
                hooks.append((f"{mlp}.hook_mid", self._identity))
            elif type(block.mlp).__name__ in _GATED:
                hooks += [(f"{mlp}.hook_pre_linear", self._keep), (f"{mlp}.hook_post", self._half)]
            else:
                hooks.append((f"{mlp}.hook_post", self._identity))
        return hooks

    def close(self) -> None:
        self.kept.clear()

    # ---------------------------------------------------------------- the MLP rules
    def _keep(self, x, hook):
        self.kept[(hook.layer(), "lin" if hook.name.endswith("pre_linear") else "pre")] = x

    def _ratio(self, layer: int, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        """f(x)/x, in float32 or better, f′(0) where x = 0; in x's dtype."""
        if layer not in self._f0:
            t = torch.zeros(1, dtype=accumulation_dtype(x.dtype), device=x.device, requires_grad=True)
            with torch.enable_grad():
                self._f0[layer] = torch.autograd.grad(self._act(layer)(t).sum(), t)[0].item()
        wide = accumulation_dtype(x.dtype)
        xs, fs = x.to(wide), fx.to(wide)
        return torch.where(xs == 0, torch.full_like(xs, self._f0[layer]), fs / torch.where(xs == 0, 1, xs)).to(x.dtype)

    def _act(self, layer: int):
        return self.model.blocks[layer].mlp.act_fn

    def _identity(self, y, hook):
        """y = f(x): forward y, backward ∂y/∂x ← f(x)/x."""
        layer = hook.layer()
        x = self.kept.pop((layer, "pre"))
        return _Coefficients.apply(y.detach(), x, self._ratio(layer, x.detach(), y.detach()))

    def _half(self, y, hook):
        """y = f(g)·u + b: forward y, backward ∂y/∂g ← ½ (f(g)/g) u, ∂y/∂u ← ½ f(g)."""
        layer = hook.layer()
        g, u = self.kept.pop((layer, "pre")), self.kept.pop((layer, "lin"))
        gd, ud = g.detach(), u.detach()
        fg = self._act(layer)(gd)
        return _Coefficients.apply(y.detach(), g, 0.5 * self._ratio(layer, gd, fg) * ud, u, 0.5 * fg)


def _constant(x, hook):
    """A norm's scale σ, an attention pattern: the same value, no gradient."""
    return x.detach()


class _Coefficients(torch.autograd.Function):
    """Forward: y itself. Backward: input x_i receives c_i ⊙ (the gradient at y), LRP's coefficients
    in place of the local Jacobian (each c_i has y's shape)."""

    @staticmethod
    def forward(ctx, y, x1, c1, x2=None, c2=None):
        ctx.save_for_backward(c1, c2 if c2 is not None else c1)
        ctx.two = c2 is not None
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad):
        c1, c2 = ctx.saved_tensors
        return None, grad * c1, None, (grad * c2 if ctx.two else None), None
