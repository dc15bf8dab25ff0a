"""What one patched forward computes, decided on the CPU before it runs (patching.py runs it).

For C circuits (removed-edge weights R [C, n_sources, n_inputs]) and per layer: which head slots
deviate from their base input (the clean x, or the fully ablated x + D when fewer slots have a kept
edge than a removed one), whether the layer computes every q/k/v itself (many deviating slots), the
weights of its one matmul over D and the δ rows (the deviating slots' shifts, each written with D
or without, whichever has fewer terms, and the upstream part of the MLP / logits slot), its
non-zero terms when a gather beats the dense matmul, and the weights of the sources those slots
read after it; and which δ rows any of that reads (only those are written, in forward order, so
every layer reads a prefix).
"""
from __future__ import annotations

import torch

from .graph import Graph


def silent_sources(model, g: Graph) -> torch.Tensor:
    """Sources whose output is exactly zero whatever the input (a head with W_O[h] = 0, an MLP with
    zero output weights and bias): their δ is 0, so patching them must change nothing, bit for bit."""
    silent = torch.zeros(g.n_sources, dtype=torch.bool)
    for layer, block in enumerate(model.blocks):
        silent[g.head_sources(layer)] = (block.attn.W_O.detach() == 0).flatten(1).all(1).cpu()
        mlp = getattr(block, "mlp", None)
        if not g.cfg.attn_only and mlp is not None and hasattr(mlp, "W_out"):
            b_out = getattr(mlp, "b_out", None)
            silent[g.mlp_source(layer)] = bool((mlp.W_out == 0).all()) and (b_out is None or bool((b_out == 0).all()))
    return silent


# one CPU core: a dense matmul does ~33 G multiply-adds/s counting zeros, a gather-accumulate
# (embedding_bag) ~11-20 G/s counting non-zeros; the gather wins below ~1/3 (0.2-0.7 measured alike)
SPARSE_BELOW = 1 / 3


def sparse(Wt: torch.Tensor, device) -> bool:
    """Whether a layer's matmul runs as a gather-accumulate over its non-zero weights (measured on
    CPU only; elsewhere the dense matmul stays)."""
    return torch.device(device).type == "cpu" and int((Wt != 0).sum()) < SPARSE_BELOW * Wt.numel()


def _terms(Wt: torch.Tensor, device, dtype) -> list:
    """Per circuit, the non-zero weights of Wt [C, n_cols, n_rows] as embedding_bag takes them:
    (row of each term, offset of each column's first term, weight of each term), columns in order."""
    out = []
    for W in Wt:
        col, row = W.nonzero().unbind(1)  # row-major: grouped by column
        starts = torch.zeros(W.shape[0], dtype=torch.long)
        starts[1:] = torch.bincount(col, minlength=W.shape[0]).cumsum(0)[:-1]
        out.append((row.to(device), starts.to(device), W[col, row].to(device, dtype)))
    return out


class Plan:
    """Which slots deviate, the rows of δ kept, and the matmul weights per layer, for C circuits
    (built on the CPU). Matmul rows: D (row 0), then the kept δ rows in forward order."""

    def __init__(self, p, removed: torch.Tensor):  # p: a patching.Patcher
        g, model = p.graph, p.model
        dtype, device = model.cfg.dtype, model.cfg.device
        R = removed.to("cpu", torch.float64) * g.edge_mask  # [C, n_sources, n_inputs]
        R[:, p.silent] = 0  # a source that never writes anything has nothing to patch
        C, H = R.shape[0], g.cfg.n_heads
        live = ~p.silent  # a silent source's δ is exactly 0: its weight never matters
        heads = []  # per layer: (kept_mode, deviating slots, D's weight [C, n_dev], δ weights [C, n, n_dev])
        for layer in range(g.cfg.n_layers):
            cols = g.head_inputs(layer)
            n = int(g.n_upstream[cols.start])
            Rh, on = R[:, :n, cols], live[:n, None]
            dev_removed, dev_kept = (Rh != 0).any(0).any(0), ((Rh != 1) & on).any(0).any(0)
            kept = p.norms[layer].exact and p.norms[layer].scale and int(dev_kept.sum()) < int(dev_removed.sum())
            dev = dev_kept if kept else dev_removed
            # a slot's shift from its layer's base (x, or x + D when kept) is Σ_removed w δ − [kept] D, or
            # equally (D = Σ δ) [not kept] D − Σ_kept (1 − w) δ: per circuit and slot the one with fewer terms
            w = Rh[:, :, dev]
            use_D = ((w != 1) & on).sum(1) + (not kept) < (w != 0).sum(1) + kept  # [C, n_dev]
            heads.append((kept, dev, use_D.double() - float(kept), (w - use_D[:, None].double()) * on))
        self.use_D = any(kept or bool((d != 0).any()) for kept, _, d, _ in heads)
        residual = {}  # (layer, "mlp" | "logits") -> (prefix column [C, 1 + n] | None, rest weights | None, add D)
        for layer in range(g.cfg.n_layers):
            n = int(g.n_upstream[g.head_inputs(layer).start])
            for key, col in ([("mlp", g.mlp_input(layer))] if not g.cfg.attn_only else []) + \
                    ([("logits", g.logits_input)] if layer == g.cfg.n_layers - 1 else []):
                residual[layer, key] = self._residual_slot(R[:, :, col], n, int(g.n_upstream[col]))
        # the δ rows any matmul or rest-product reads; compact[u] = its row in the buffer
        needed = torch.zeros(g.n_sources, dtype=torch.bool)
        for layer, (_, _, _, w) in enumerate(heads):
            needed[:w.shape[1]] |= (w != 0).any(0).any(1)
        for (layer, key), (col, rest, _) in residual.items():
            n = int(g.n_upstream[g.head_inputs(layer).start])
            if col is not None:
                needed[:n] |= (col[:, 1:] != 0).any(0)
            if rest is not None:
                needed[n:n + rest.shape[1]] |= (rest != 0).any(0)
        self.needed = needed
        self.compact = torch.cumsum(needed, 0) - 1  # buffer row (after D) of each needed source
        self.n_rows = int(needed.sum())
        self.layers = []
        for layer, (kept_mode, dev, top, w) in enumerate(heads):
            n = w.shape[1]
            rows = needed[:n]
            norm = p.norms[layer]
            # many deviating slots: every q/k/v of the layer is computed here, TransformerLens projects none
            direct = norm.exact and norm.scale and not p.shortformer and 2 * int(dev.sum()) >= 3 * H
            lp = {"kept_mode": kept_mode, "direct": direct, "n_dev": int(dev.sum()),
                  "dev": dev.nonzero().flatten().to(device), "rest": (~dev).nonzero().flatten().to(device),
                  "letters": [dev[i * H:(i + 1) * H].nonzero().flatten().to(device) for i in range(3)],
                  "n_rows": 1 + int(rows.sum())}
            columns = [torch.cat([top[:, None], w[:, rows]], 1)]
            for key in ("mlp", "logits"):
                col, rest, add_D = residual.get((layer, key), (None, None, False))
                lp[key + "_D"] = add_D
                if col is not None:
                    lp[key] = sum(c.shape[2] for c in columns)
                    columns.append(torch.cat([col[:, :1], col[:, 1:][:, rows]], 1)[:, :, None])
                if rest is not None:
                    rest_rows = needed[n:n + rest.shape[1]]
                    lp[key + "_rest"] = (rest[:, rest_rows].to(device, dtype), 1 + int(rows.sum()), int(rest_rows.sum()))
                lp[key + "_on"] = col is not None or rest is not None or add_D
            Wt = torch.cat(columns, 2).transpose(1, 2)  # [C, n_cols, 1 + kept rows upstream]
            lp["Wt"] = Wt.contiguous().to(device, dtype) if Wt.shape[1] else None
            lp["terms"] = _terms(Wt, device, dtype) if Wt.shape[1] and sparse(Wt, device) else None
            self.layers.append(lp)

    def _residual_slot(self, Rc: torch.Tensor, n: int, n_slot: int):
        """An MLP / logits slot reading sources [0, n_slot): its shift is Σ_removed δ, or (kept-edge base,
        when that has fewer non-zero weights) D − Σ_kept δ with D added at the slot's hook. Returns the
        column [C, 1 + n] (D, then δ rows) of its first n sources in the layer's matmul, the weights
        [C, n_slot − n] of the sources written after that matmul, and whether to add D."""
        C = Rc.shape[0]
        R = Rc[:, :n_slot]
        kept = self.use_D and int((R != 1).any(0).sum()) < int((R != 0).any(0).sum())
        w = R - 1.0 if kept else R
        prefix, rest = w[:, :n], w[:, n:]
        # D at the slot's hook holds every source written before it; a slot reading no source past
        # the matmul (an MLP parallel to attention) takes D in the matmul instead
        d_in_matmul = kept and n_slot == n
        col = None
        if bool((prefix != 0).any()) or d_in_matmul:
            col = torch.zeros(C, 1 + n, dtype=torch.float64)
            col[:, 0], col[:, 1:] = float(d_in_matmul), prefix
        return col, (rest if bool((rest != 0).any()) else None), kept and not d_in_matmul
