"""Edge scores in the MIB circuit track's submission formats (Mueller et al. 2025,
github.com/hannamw/MIB-circuit-track): the importance files its `run_evaluation.py` reads, laid out
as EAP-IG's `Graph.to_json` / `Graph.to_pt` write them.

    .json  {"cfg": {n_layers, n_heads, parallel_attn_mlp, d_model}, "nodes": {name: {"in_graph"}},
            "edges": {"SRC->DST": {"score", "in_graph"}}}
    .pt    torch.save({"cfg", "src_nodes": [n_src names], "dst_nodes": [n_dst names],
                       "edges_scores": float32 [n_src, n_dst], "edges_in_graph": bool [n_src, n_dst],
                       "nodes_in_graph": bool [n_src]})
           src_nodes: input, then per layer a{L}.h0 … a{L}.h{H-1}, m{L}; dst_nodes: per layer the q,
           then k, then v inputs of every head, m{L}; then logits (EAP-IG's forward/backward order)

Sign: MIB attributes the loss, −metric, so MIB's score = −(edgewise's score), and MIB's CPR order
(score high to low) is edgewise's most negative first, as ew.mib_scores ranks; |score| (CMD) is
unchanged. MIB's graphs always have MLPs: an attention-only model's .pt holds them with score 0,
never in the graph, and its .json lists only the edges the model has (cfg "attn_only": true).
A submission is one folder per task and model, `<task>_<model>/importances.json` (or .pt).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from .circuit import Circuit
from .graph import Graph, GraphConfig

FORMATS = ("json", "pt")


def _cfg(graph: Graph) -> dict:
    c = graph.cfg
    d = {"n_layers": c.n_layers, "n_heads": c.n_heads, "parallel_attn_mlp": c.parallel_attn_mlp, "d_model": c.d_model}
    return {**d, "attn_only": True} if c.attn_only else d


def _checked(graph: Graph, scores, in_graph) -> tuple[torch.Tensor, torch.Tensor]:
    scores = torch.as_tensor(scores).detach().double().cpu().flatten()
    if len(scores) != graph.n_edges:
        raise ValueError(f"scores has {len(scores)} entries, the graph has {graph.n_edges} edges")
    if not bool(torch.isfinite(scores).all()):
        bad = int((~torch.isfinite(scores)).nonzero()[0])
        raise ValueError(f"score of edge {graph.edge_names[bad]!r} is {float(scores[bad])}: MIB needs finite scores")
    keep = torch.zeros_like(graph.edge_mask) if in_graph is None else torch.as_tensor(in_graph).bool().cpu()
    if keep.shape != graph.edge_mask.shape:
        raise ValueError(f"in_graph has shape {tuple(keep.shape)}, the graph's edge matrix {tuple(graph.edge_mask.shape)}")
    return scores, keep & graph.edge_mask


def mib_json_chunks(graph: Graph, scores, in_graph=None):
    """The importance .json as an iterator of text chunks (MIB's sign); in_graph: bool [n_sources,
    n_inputs] or None (nothing in the graph). Bad input raises here, before the first chunk."""
    scores, keep = _checked(graph, scores, in_graph)
    return _json_chunks(graph, scores, keep)


def _json_chunks(graph: Graph, scores: torch.Tensor, keep: torch.Tensor):
    nodes = Circuit(graph, keep).nodes_in_graph()
    head = {"cfg": _cfg(graph), "nodes": {n: {"in_graph": bool(v)} for n, v in nodes.items()}}
    yield json.dumps(head)[:-1] + ',"edges":{'
    names, flags, step = graph.edge_names, keep[graph.edge_mask].tolist(), 20000
    values = (-scores).tolist()
    for start in range(0, len(names), step):
        yield ("," if start else "") + ",".join(
            f'"{n}":{{"score":{_num(v)},"in_graph":{"true" if k else "false"}}}'
            for n, v, k in zip(names[start:start + step], values[start:start + step], flags[start:start + step]))
    yield "}}"


def _num(x: float) -> str:
    return repr(x + 0.0)  # finite (checked); + 0.0 writes −0.0 as 0.0


def mib_tensors(graph: Graph, scores, in_graph=None) -> dict:
    """The importance .pt's dict (MIB's sign), in EAP-IG's full layout (with MLPs)."""
    scores, keep = _checked(graph, scores, in_graph)
    c = graph.cfg
    full = Graph(GraphConfig(c.n_layers, c.n_heads, c.d_model, c.parallel_attn_mlp, attn_only=False))
    rows = torch.tensor([full.source_index[n] for n in graph.source_names])
    cols = torch.tensor([full.input_index[n] for n in graph.input_names])
    matrix = torch.zeros(graph.edge_mask.shape, dtype=torch.float32)
    matrix[graph.edge_mask] = (-scores).float()
    edges_scores = torch.zeros(full.n_sources, full.n_inputs, dtype=torch.float32)
    edges_in_graph = torch.zeros(full.n_sources, full.n_inputs, dtype=torch.bool)
    edges_scores[rows[:, None], cols[None, :]] = matrix
    edges_in_graph[rows[:, None], cols[None, :]] = keep
    nodes = Circuit(graph, keep).nodes_in_graph()
    return {"cfg": _cfg(graph), "src_nodes": list(full.source_names), "dst_nodes": list(full.input_names),
            "edges_scores": edges_scores, "edges_in_graph": edges_in_graph,
            "nodes_in_graph": torch.tensor([nodes.get(n, False) for n in full.source_names])}


def mib_bytes(graph: Graph, scores, in_graph=None, fmt: str = "json") -> bytes:
    """The whole file in `fmt` ('json' or 'pt')."""
    if fmt == "json":
        return "".join(mib_json_chunks(graph, scores, in_graph)).encode()
    if fmt == "pt":
        buf = io.BytesIO()
        torch.save(mib_tensors(graph, scores, in_graph), buf)
        return buf.getvalue()
    raise ValueError(f"unknown MIB format {fmt!r}; choose from {', '.join(FORMATS)}")


def write_mib(path, graph: Graph, scores, in_graph=None) -> Path:
    """Write MIB's importance file, making its folder (a submission's `<task>_<model>/`); the format
    follows the suffix (.json or .pt)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"{path}: MIB files end in .json or .pt, not {path.suffix or '(no suffix)'!r}")
    data = mib_bytes(graph, scores, in_graph, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
