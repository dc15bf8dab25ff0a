"""The computational graph of a transformer: nodes, edges and the dense index maps behind them.

Sources (what writes the residual stream), in forward order:
    input, then per layer L: a{L}.h0 … a{L}.h{H-1}, m{L}
Input slots (what reads it), in forward order:
    per layer L: a{L}.h*<q>, a{L}.h*<k>, a{L}.h*<v>, m{L}; then logits
An edge u→v exists when u writes before v reads. Because sources are in forward order, the sources
an input slot sees are always a *prefix* of the source list: `n_upstream[slot]`. The score matrix is
one dense `[n_sources, n_inputs]` tensor; `edge_mask` marks its real entries (lower-triangular in
blocks). Edges are enumerated row-major over that mask, so `scores[edge_mask]` is aligned with `edge_names`.
Names follow EAP-IG: `input->a0.h3<q>`, `a0.h3->a2.h1<v>`, `a1.h0->m1`, `m11->logits`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import torch

QKV = ("q", "k", "v")
_EDGE_RE = re.compile(r"^(input|a\d+\.h\d+|m\d+)->(a\d+\.h\d+<[qkv]>|m\d+|logits)$")


@dataclass(frozen=True)
class GraphConfig:
    """What the graph's shape depends on (EAP-IG's `cfg`, plus `attn_only`)."""

    n_layers: int
    n_heads: int
    d_model: int = 0
    parallel_attn_mlp: bool = False
    attn_only: bool = False

    @classmethod
    def from_model(cls, model_or_cfg) -> "GraphConfig":
        """From a HookedTransformer, its config, or a dict with the same keys."""
        cfg = getattr(model_or_cfg, "cfg", model_or_cfg)
        if isinstance(cfg, dict):
            return cls(int(cfg["n_layers"]), int(cfg["n_heads"]), int(cfg.get("d_model", 0)),
                       bool(cfg.get("parallel_attn_mlp", False)), bool(cfg.get("attn_only", False)))
        # grouped-query attention counts as ungrouped (a k and v input per query head), as in MIB;
        # the engine switches TransformerLens's ungrouping on while it runs (activations.edge_hooks_enabled)
        return cls(cfg.n_layers, cfg.n_heads, cfg.d_model, bool(cfg.parallel_attn_mlp), bool(cfg.attn_only))

    @property
    def n_edges(self) -> int:
        """Edges of this shape without building the mask: Σ over input slots of the sources upstream
        (a layer's q/k/v see everything before the layer; its MLP also sees the layer's heads unless
        parallel; logits see every source). Equal to Graph(cfg).n_edges."""
        L, H, mlp = self.n_layers, self.n_heads, 0 if self.attn_only else 1
        total = 0
        for layer in range(L):
            before = 1 + layer * (H + mlp)
            total += 3 * H * before + mlp * (before + (0 if self.parallel_attn_mlp else H))
        return total + 1 + L * (H + mlp)

    def to_dict(self) -> dict:
        return {"n_layers": self.n_layers, "n_heads": self.n_heads, "d_model": self.d_model,
                "parallel_attn_mlp": self.parallel_attn_mlp, "attn_only": self.attn_only}


class Graph:
    """Nodes, input slots and edges of one model shape, with the index maps used for scoring."""

    def __init__(self, cfg: GraphConfig):
        self.cfg = cfg
        L, H = cfg.n_layers, cfg.n_heads
        per_layer_src = H + (0 if cfg.attn_only else 1)
        self.n_sources = 1 + L * per_layer_src
        self.n_inputs = L * (3 * H + (0 if cfg.attn_only else 1)) + 1

        self.source_names: list[str] = ["input"]
        self.input_names: list[str] = []
        n_upstream: list[int] = []
        for layer in range(L):
            first = 1 + layer * per_layer_src  # sources written before layer `layer` starts
            for letter in QKV:
                for h in range(H):
                    self.input_names.append(f"a{layer}.h{h}<{letter}>")
                    n_upstream.append(first)
            self.source_names += [f"a{layer}.h{h}" for h in range(H)]
            if not cfg.attn_only:
                self.input_names.append(f"m{layer}")
                n_upstream.append(first if cfg.parallel_attn_mlp else first + H)
                self.source_names.append(f"m{layer}")
        self.input_names.append("logits")
        n_upstream.append(self.n_sources)
        self.n_upstream = torch.tensor(n_upstream)
        # edge_mask[s, i] = source s is written before input slot i reads the residual stream
        self.edge_mask = torch.arange(self.n_sources)[:, None] < self.n_upstream[None, :]
        self.source_index = {n: i for i, n in enumerate(self.source_names)}
        self.input_index = {n: i for i, n in enumerate(self.input_names)}

    @classmethod
    def from_model(cls, model_or_cfg) -> "Graph":
        return cls(GraphConfig.from_model(model_or_cfg))

    # ---- layout of sources and input slots per layer (used by hooks) ----
    def head_sources(self, layer: int) -> slice:
        """Rows of the heads of `layer` in the source list."""
        start = 1 + layer * (self.cfg.n_heads + (0 if self.cfg.attn_only else 1))
        return slice(start, start + self.cfg.n_heads)

    def mlp_source(self, layer: int) -> int:
        return self.head_sources(layer).stop

    def qkv_inputs(self, layer: int, letter: str) -> slice:
        """Columns of the q, k or v slots of the heads of `layer`."""
        H = self.cfg.n_heads
        start = layer * (3 * H + (0 if self.cfg.attn_only else 1)) + QKV.index(letter) * H
        return slice(start, start + H)

    def head_inputs(self, layer: int) -> slice:
        """Columns of all q, k and v slots of `layer` (contiguous: q heads, k heads, v heads)."""
        return slice(self.qkv_inputs(layer, "q").start, self.qkv_inputs(layer, "v").stop)

    def mlp_input(self, layer: int) -> int:
        return self.qkv_inputs(layer, "v").stop

    @property
    def logits_input(self) -> int:
        return self.n_inputs - 1

    # ---- edges ----
    @property
    def n_edges(self) -> int:
        return int(self.edge_mask.sum())

    @cached_property
    def edge_index(self) -> torch.Tensor:
        """[n_edges, 2] (source, input) matrix positions, row-major: the order of `edge_names`."""
        return self.edge_mask.nonzero()

    @cached_property
    def edge_names(self) -> list[str]:
        src, dst = self.source_names, self.input_names
        return [f"{src[s]}->{dst[i]}" for s, i in self.edge_index.tolist()]

    @cached_property
    def edge_position(self) -> dict[str, int]:
        return {n: k for k, n in enumerate(self.edge_names)}

    @property
    def node_names(self) -> list[str]:
        return self.source_names + ["logits"]

    def edge_matrix_index(self, name: str) -> tuple[int, int]:
        """(source row, input column) of an edge name; ValueError names what is wrong."""
        m = _EDGE_RE.match(name)
        if not m:
            raise ValueError(f"edge {name!r} is not of the form SRC->DST (e.g. 'a0.h1->a2.h3<q>', 'm1->logits')")
        src, dst = m.groups()
        if src not in self.source_index:
            raise ValueError(f"edge {name!r}: no source node {src!r} in this model")
        if dst not in self.input_index:
            raise ValueError(f"edge {name!r}: no input {dst!r} in this model")
        s, i = self.source_index[src], self.input_index[dst]
        if not self.edge_mask[s, i]:
            raise ValueError(f"edge {name!r}: {src} does not write the residual stream before {dst} reads it")
        return s, i

    def mask_from_edges(self, names) -> torch.Tensor:
        """Boolean [n_sources, n_inputs] mask with the named edges set."""
        mask = torch.zeros_like(self.edge_mask)
        for name in names:
            mask[self.edge_matrix_index(name)] = True
        return mask

    def edges_from_mask(self, mask: torch.Tensor) -> list[str]:
        keep = mask[self.edge_mask].tolist()
        return [n for n, k in zip(self.edge_names, keep) if k]

    @staticmethod
    def split_edge(name: str) -> tuple[str, str, str | None]:
        """'a0.h1->a2.h3<q>' → ('a0.h1', 'a2.h3', 'q'); 'm0->logits' → ('m0', 'logits', None)."""
        src, dst = name.split("->")
        if dst.endswith(">"):
            return src, dst[:-3], dst[-2]
        return src, dst, None

    # ---- hook names (TransformerLens) ----
    def source_hooks(self) -> list[tuple[str, int | slice]]:
        """(hook name, source rows it gives) in forward order. Heads are read at `hook_z` and
        multiplied by W_O per head (TransformerLens's own per-head `hook_result` broadcasts a
        [B, P, H, d_head, d_model] tensor: ~5× slower EAP on GPT-2 on a CPU)."""
        hooks: list[tuple[str, int | slice]] = [("blocks.0.hook_resid_pre", 0)]
        for layer in range(self.cfg.n_layers):
            hooks.append((f"blocks.{layer}.attn.hook_z", self.head_sources(layer)))
            if not self.cfg.attn_only:
                hooks.append((f"blocks.{layer}.hook_mlp_out", self.mlp_source(layer)))
        return hooks

    def residual_write_hooks(self) -> list[str]:
        """Where each entry of source_hooks() enters the residual stream (a layer's heads together, at hook_attn_out)."""
        return [name if not name.endswith("attn.hook_z") else name.replace("attn.hook_z", "hook_attn_out")
                for name, _ in self.source_hooks()]

    def residual_input_hooks(self) -> list[tuple[str, int]]:
        """(hook name, column) of the slots that read the residual stream whole: MLP inputs, logits."""
        return [(name, cols) for name, cols in self.input_hooks() if isinstance(cols, int)]

    def input_hooks(self) -> list[tuple[str, int | slice]]:
        """(hook name, input columns it reads) in forward order."""
        hooks: list[tuple[str, int | slice]] = []
        for layer in range(self.cfg.n_layers):
            for letter in QKV:
                hooks.append((f"blocks.{layer}.hook_{letter}_input", self.qkv_inputs(layer, letter)))
            if not self.cfg.attn_only:
                hooks.append((f"blocks.{layer}.hook_mlp_in", self.mlp_input(layer)))
        hooks.append((f"blocks.{self.cfg.n_layers - 1}.hook_resid_post", self.logits_input))
        return hooks
