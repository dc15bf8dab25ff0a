"""Strict interchange-intervention training (SIIT, Gupta et al. 2024), on edges.

IIT (Geiger et al. 2022) aligns components of a network with the variables of a high-level causal
model (HL): run the network on a base input with an aligned component's output taken from a source
input, and train it to give what the HL gives under the same interchange. SIIT adds the *strict*
part: components outside the alignment, resampled from the source, must leave the base output
unchanged — else they could carry task information the HL does not have.

The ground truth edgewise needs is a set of edges, so here both parts act on edges, the graph's
unit (`edgewise.Graph`): an interchange of an HL variable patches every outgoing edge of its aligned
node; the strict part patches a random set of edges outside the circuit (one edge, a random half,
or all of them — "all" is exactly the circuit-faithfulness test). The InterpBench code samples
one non-circuit *node* per step; its edges between circuit nodes stay free (they are only held by
the IIT targets), which an edge-level truth cannot afford.

Patching edge u→v means v reads  x_v − a_u + a_u(source)  where a_u is u's output in this very
forward pass (so patches compose along paths exactly as in edgewise's patching). Everything here
is differentiable in the base run; source activations are computed without gradient.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from edgewise import Graph


@contextmanager
def edge_hooks(model):
    """Expose split q/k/v inputs and MLP inputs (TransformerLens flags)."""
    cfg = model.cfg
    saved = (cfg.use_split_qkv_input, cfg.use_hook_mlp_in)
    model.set_use_split_qkv_input(True)
    if not cfg.attn_only:
        model.set_use_hook_mlp_in(True)
    try:
        yield
    finally:
        model.set_use_split_qkv_input(saved[0])
        model.cfg.use_hook_mlp_in = saved[1]


def _rows(model, x: torch.Tensor, hook) -> list[torch.Tensor]:
    """A source hook's output as one [B, P, d] tensor per source row; head h writes z_h @ W_O[h]
    (TransformerLens's own hook_result broadcasts a 5-d tensor: half the step's time in a profile)."""
    if not hook.name.endswith("hook_z"):
        return [x]
    W_O = model.blocks[int(hook.name.split(".")[1])].attn.W_O    # [H, d_head, d_model]
    return list(torch.einsum("bphe,hed->hbpd", x, W_O).unbind(0))


def source_acts(model, graph: Graph, tokens: torch.Tensor) -> torch.Tensor:
    """[n_sources, B, P, d_model] outputs of every source on `tokens`, without gradient."""
    acts: list[torch.Tensor] = []
    hooks = [(name, lambda x, hook: acts.extend(_rows(model, x, hook))) for name, _ in graph.source_hooks()]
    with torch.no_grad(), edge_hooks(model):
        model.run_with_hooks(tokens, fwd_hooks=hooks)
    return torch.stack(acts)


def run_patched(model, graph: Graph, tokens: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Logits of `tokens` with the edges in `mask` ([B, n_sources, n_inputs], 0/1 per example)
    carrying the `source` activations ([n_sources, B, P, d]); differentiable."""
    deltas: list[torch.Tensor] = []  # per source row: source − this run's output, [B, P, d]
    mask = mask.to(source.dtype)

    def on_source(x, hook):
        for a in _rows(model, x, hook):
            deltas.append(source[len(deltas)] - a)

    def on_input(x, hook, cols):
        n_up = int(graph.n_upstream[cols.start if isinstance(cols, slice) else cols])
        d = torch.stack(deltas[:n_up], 2)  # [B, P, n_up, d]
        w = mask[:, :n_up, cols]           # [B, n_up, H] for head slots, [B, n_up] otherwise
        if isinstance(cols, slice):
            return x + torch.einsum("bpsd,bsh->bphd", d, w)
        return x + torch.einsum("bpsd,bs->bpd", d, w)

    hooks = [(n, on_source) for n, _ in graph.source_hooks()]
    hooks += [(n, lambda x, hook, cols=c: on_input(x, hook, cols)) for n, c in graph.input_hooks()]
    # TransformerLens calls hooks in forward order: a layer's input slots fire before its sources are
    # written, so `deltas` holds exactly the sources upstream of each slot when it is read
    with edge_hooks(model):
        return model.run_with_hooks(tokens, fwd_hooks=hooks)


def node_rows(graph: Graph, nodes) -> torch.Tensor:
    """[n_sources, n_inputs] mask of every outgoing edge of `nodes` (an interchange of those nodes)."""
    m = torch.zeros_like(graph.edge_mask)
    for n in nodes:
        m[graph.source_index[n]] = graph.edge_mask[graph.source_index[n]]
    return m


def strict_masks(graph: Graph, circuit: torch.Tensor, n: int, gen: torch.Generator,
                 weights=(1, 1, 2, 4)) -> torch.Tensor:
    """[n, n_sources, n_inputs] random sets of edges outside `circuit`: per example none, one edge,
    each edge with probability ½, or all of them, drawn in proportion to `weights`. "All" — the
    circuit alone must do the task — gets half: it is the case faithfulness measures, and the one
    a model that found a route around its circuit fails."""
    outside = graph.edge_mask & ~circuit
    idx = outside.nonzero()
    kind = torch.multinomial(torch.tensor(weights, dtype=torch.float), n, replacement=True, generator=gen)
    masks = torch.zeros(n, *graph.edge_mask.shape, dtype=torch.bool)
    one = idx[torch.randint(0, len(idx), (n,), generator=gen)]
    half = outside & (torch.rand(n, *outside.shape, generator=gen) < 0.5)
    for b in range(n):
        if kind[b] == 1:
            masks[b, one[b, 0], one[b, 1]] = True
        elif kind[b] == 2:
            masks[b] = half[b]
        elif kind[b] == 3:
            masks[b] = outside
    return masks
