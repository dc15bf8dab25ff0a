"""A circuit: the set of edges kept, with their scores and where they came from.

JSON (`edgewise.circuit/v1`): `cfg`, `nodes`, `edges` follow EAP-IG's `Graph.to_json`, so either
tool reads the other's file. A node is in the graph when a kept edge leaves or enters it.
"""
from __future__ import annotations

import json
import math

import torch

from .graph import Graph, GraphConfig

FORMAT = "edgewise.circuit/v1"


def rank_edges(scores: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """Edge positions by |score|, largest first; ties keep graph order (the ranking everywhere).
    signed: most negative score first instead: the edges whose ablation lowers the metric most
    (MIB attributes the loss −metric and ranks its scores high to low: the same order)."""
    if signed:
        return torch.argsort(scores, stable=True)
    return torch.argsort(scores.abs(), descending=True, stable=True)


def prune_connected(graph: Graph, mask: torch.Tensor) -> torch.Tensor:
    """The kept edges [n_sources, n_inputs] that lie on some input → logits path of kept edges
    (EAP-IG's `Graph.prune`, which MIB applies before evaluating a circuit): an edge u→v stays iff
    u is reached from the input node and v's node reaches the logits, both through kept edges.
    A head is reached through any of its q, k, v inputs."""
    keep = mask.bool().cpu() & graph.edge_mask
    n_s = graph.n_sources
    # node of each input slot: the source index of its head or MLP, n_s for the logits
    node = torch.tensor([graph.source_index.get(name.split("<")[0], n_s) for name in graph.input_names])
    adj = torch.zeros(n_s, n_s + 1, dtype=torch.bool)  # adj[u, t]: a kept edge from source u into node t
    adj.index_put_((torch.arange(n_s)[:, None].expand_as(keep)[keep], node[None].expand_as(keep)[keep]),
                   torch.ones(int(keep.sum()), dtype=torch.bool))
    adj = adj.float()
    reached = torch.zeros(n_s + 1)
    reached[0] = 1.0  # the input node
    for _ in range(n_s):  # sources are in forward order, so each pass settles at least one more
        new = ((reached[:n_s] @ adj) > 0).float()
        new[0] = 1.0
        if torch.equal(new, reached):
            break
        reached = new
    reaches = torch.zeros(n_s + 1)
    reaches[n_s] = 1.0  # the logits
    for _ in range(n_s):
        new = ((adj @ reaches) > 0).float()
        new = torch.cat([new, torch.ones(1)])
        if torch.equal(new, reaches):
            break
        reaches = new
    return keep & (reached[:n_s] > 0)[:, None] & (reaches[node] > 0)[None, :]


class Circuit:
    def __init__(self, graph: Graph, in_graph: torch.Tensor, scores: torch.Tensor | None = None, **meta):
        """in_graph: bool [n_sources, n_inputs]; scores: one per graph edge (graph.edge_names order)."""
        self.graph = graph
        self.in_graph = in_graph & graph.edge_mask
        self.scores = scores
        self.meta = {k: v for k, v in meta.items() if v not in (None, "", {})}

    # ---- construction
    @classmethod
    def from_scores(cls, graph: Graph, scores: torch.Tensor, top_k: int | None = None,
                    min_abs_score: float | None = None, **meta) -> "Circuit":
        """Keep the top_k edges by |score| (ties keep graph order), or every edge with |score| ≥ min_abs_score."""
        if (top_k is None) == (min_abs_score is None):
            raise ValueError("give exactly one of top_k or min_abs_score")
        if top_k is not None:
            if top_k < 0:
                raise ValueError(f"top_k must be ≥ 0, got {top_k}")
            keep = torch.zeros(len(scores), dtype=torch.bool)
            keep[rank_edges(scores)[:top_k]] = True
            selection = {"top_k": int(min(top_k, len(scores)))}
        else:
            keep = scores.abs() >= min_abs_score
            selection = {"min_abs_score": float(min_abs_score)}
        in_graph = torch.zeros_like(graph.edge_mask)
        in_graph[graph.edge_mask] = keep
        return cls(graph, in_graph, scores.detach().cpu().double(), selection=selection, **meta)

    @classmethod
    def from_edges(cls, model_or_graph, names, **meta) -> "Circuit":
        graph = model_or_graph if isinstance(model_or_graph, Graph) else Graph.from_model(model_or_graph)
        return cls(graph, graph.mask_from_edges(names), **meta)

    # ---- views
    @property
    def edges(self) -> list[str]:
        return self.graph.edges_from_mask(self.in_graph)

    @property
    def n_edges(self) -> int:
        return int(self.in_graph.sum())

    def nodes_in_graph(self) -> dict[str, bool]:
        g = self.graph
        out = self.in_graph.any(1).tolist()  # per source
        into = self.in_graph.any(0)  # per input slot
        names = {n: o for n, o in zip(g.source_names, out)}
        for name, hit in zip(g.input_names, into.tolist()):
            node = name.split("<")[0]
            names[node] = names.get(node, False) or hit
        return names

    # ---- JSON
    def to_dict(self) -> dict:
        g = self.graph
        scores = self.scores.tolist() if self.scores is not None else [0.0] * g.n_edges
        keep = self.in_graph[g.edge_mask].tolist()
        d = {"format": FORMAT, "cfg": g.cfg.to_dict()}
        d.update(self.meta)
        d["nodes"] = {n: {"in_graph": bool(v)} for n, v in self.nodes_in_graph().items()}
        d["edges"] = {n: {"score": float(s), "in_graph": bool(k)} for n, s, k in zip(g.edge_names, scores, keep)}
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes | dict) -> "Circuit":
        """Read an edgewise or EAP-IG circuit: the one validation layer for circuits from outside.
        A `CircuitError` (a ValueError) names the field at fault. Bounds come from the largest real
        models (LIMITS); `attn_only` absent means MLPs are present, as in EAP-IG; scores are finite
        numbers, `in_graph` real booleans."""
        d = _load(text)
        if not isinstance(d, dict):
            raise CircuitError(f"a circuit file must be an object with cfg, nodes and edges, got {_kind(d)}")
        for key in ("cfg", "edges"):
            if key not in d:
                raise CircuitError(f"the file lacks {key!r} (EAP-IG and edgewise files have cfg, nodes, edges)", key)
        graph = Graph(_read_cfg(d["cfg"]))
        scores, in_graph = _read_edges(d["edges"], graph)
        _check_nodes(d.get("nodes"), graph)
        return cls(graph, in_graph, scores, **_read_meta(d))


# ---------------------------------------------------------------- validation of circuit files
LIMITS = {"n_layers": 128, "n_heads": 128, "d_model": 65_536, "n_edges": 2_000_000}
# n_layers/n_heads: Llama-3.1-405B has 126 layers of 128 heads. n_edges: Llama-3.1-8B, the largest model
# MIB scores, has 1,592,881 (GQA ungrouped); the limit keeps a graph's arrays to tens of MB.
META_TEXT = ("model", "method", "metric", "ablation", "format")


class CircuitError(ValueError):
    """A circuit file that cannot be read; `field` is where (e.g. "cfg.n_layers", "edges")."""

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


def _kind(x) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(x), "a number" if isinstance(x, (int, float)) else type(x).__name__)


def _refuse_constant(name: str):
    raise CircuitError(f"{name} is not a JSON number (scores must be finite)")


def _load(text):
    if isinstance(text, dict):
        return text
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except CircuitError:
        raise
    except RecursionError:
        raise CircuitError("the JSON nests too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, bad UTF-8, a 5,000-digit integer
        raise CircuitError(f"not valid JSON: {e}") from None


def _integer(v, field: str, low: int = 0, high: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low or (high is not None and v > high):
        bounds = f"from {low} to {high:,}" if high is not None else f"≥ {low}"
        raise CircuitError(f"must be an integer {bounds}, got {json.dumps(v)[:40]}", field)
    return v


def _bool(x: dict, key: str, where: str, default=False) -> bool:
    v = x.get(key, default)
    if not isinstance(v, bool):
        raise CircuitError(f"must be true or false, got {json.dumps(v)[:40]}", where)
    return v


def n_edges_of(n_layers: int, n_heads: int, attn_only: bool, parallel: bool) -> int:
    """Graph(cfg).n_edges without building the graph: Σ over input slots of the sources before it."""
    per_layer = n_heads + (0 if attn_only else 1)
    total = 1 + n_layers * per_layer  # logits reads every source
    for layer in range(n_layers):
        first = 1 + layer * per_layer
        total += 3 * n_heads * first + (0 if attn_only else first + (0 if parallel else n_heads))
    return total


def _read_cfg(cfg) -> GraphConfig:
    if not isinstance(cfg, dict):
        raise CircuitError(f"must be an object with n_layers and n_heads, got {_kind(cfg)}", "cfg")
    L, H = (_integer(cfg.get(k), f"cfg.{k}", 1, LIMITS[k]) for k in ("n_layers", "n_heads"))
    d_model = _integer(cfg.get("d_model", 0), "cfg.d_model", 0, LIMITS["d_model"])
    parallel = _bool(cfg, "parallel_attn_mlp", "cfg.parallel_attn_mlp")
    attn_only = _bool(cfg, "attn_only", "cfg.attn_only")  # absent: MLPs present (EAP-IG has no such key)
    n = n_edges_of(L, H, attn_only, parallel)
    if n > LIMITS["n_edges"]:
        raise CircuitError(f"a {L}-layer, {H}-head graph has {n:,} edges; at most {LIMITS['n_edges']:,} are accepted "
                           "(Llama-3.1-8B has 1,592,881)", "cfg")
    return GraphConfig(L, H, d_model, parallel, attn_only)


def _read_edges(edges, graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores [n_edges] float64 in graph order, in_graph [n_sources, n_inputs]); edges absent score 0."""
    if not isinstance(edges, dict):
        raise CircuitError(f'must map edge names to {{"score", "in_graph"}}, got {_kind(edges)}', "edges")
    dense = torch.zeros(graph.n_sources, graph.n_inputs, dtype=torch.float64)
    in_graph = torch.zeros_like(graph.edge_mask)
    rows, cols, values, kept = [], [], [], []
    for name, info in edges.items():
        try:
            if not isinstance(name, str):
                raise ValueError(f"edge names are strings, got {_kind(name)}")
            s, i = graph.edge_matrix_index(name)
        except ValueError as e:
            raise CircuitError(str(e), "edges") from None
        if not isinstance(info, dict):
            raise CircuitError(f"edge {name!r}: expected an object with score and in_graph, got {_kind(info)}", "edges")
        score = info.get("score", 0.0)
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise CircuitError(f"edge {name!r}: score must be a finite number, got {json.dumps(score)[:40]}", "edges")
        keep = info.get("in_graph", False)
        if not isinstance(keep, bool):
            raise CircuitError(f"edge {name!r}: in_graph must be true or false, got {json.dumps(keep)[:40]}", "edges")
        rows.append(s)
        cols.append(i)
        values.append(float(score))
        kept.append(keep)
    if rows:
        r, c = torch.tensor(rows), torch.tensor(cols)
        dense[r, c] = torch.tensor(values, dtype=torch.float64)
        in_graph[r, c] = torch.tensor(kept)
    return dense[graph.edge_mask], in_graph  # row-major over the mask: graph edge order


def _check_nodes(nodes, graph: Graph) -> None:
    if nodes is None:
        return
    if not isinstance(nodes, dict):
        raise CircuitError(f'must map node names to {{"in_graph"}}, got {_kind(nodes)}', "nodes")
    known = set(graph.node_names)
    for name, info in nodes.items():
        if name not in known:
            raise CircuitError(f"no node {name[:80]!r} in a {graph.cfg.n_layers}-layer, {graph.cfg.n_heads}-head "
                               f"graph{' without MLPs' if graph.cfg.attn_only else ''}", "nodes")
        if not isinstance(info, dict):
            raise CircuitError(f"node {name!r}: expected an object with in_graph, got {_kind(info)}", "nodes")
        if "in_graph" in info:
            _bool(info, "in_graph", "nodes")


def _text(v, field: str, limit: int = 500) -> str:
    if not isinstance(v, str) or len(v) > limit or any(ord(c) < 32 for c in v):
        raise CircuitError(f"must be a string of at most {limit} characters without control characters", field)
    return v


def _number(v, field: str, low: float | None = None, allow_null: bool = False):
    if v is None and allow_null:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (low is not None and v < low):
        raise CircuitError(f"must be a finite number{f' ≥ {low:g}' if low is not None else ''}, "
                           f"got {json.dumps(v)[:40]}", field)
    return v


def _section(d: dict, key: str) -> dict | None:
    v = d.get(key)
    if v is not None and not isinstance(v, dict):
        raise CircuitError(f"must be an object, got {_kind(v)}", key)
    return v


def _read_meta(d: dict) -> dict:
    """model, method, metric, ablation, dataset, selection, faithfulness: checked, then kept."""
    meta = {k: _text(d[k], k) for k in META_TEXT if k in d and d[k] is not None}
    meta.pop("format", None)
    checks = {"dataset": {"n_pairs": _integer, "sha256": lambda v, field: _text(v, field, 128)},
              "selection": {"top_k": _integer, "min_abs_score": lambda v, field: _number(v, field, 0)}}
    for key, fields in checks.items():
        if (part := _section(d, key)) is not None:
            meta[key] = {k: check(part[k], f"{key}.{k}") for k, check in fields.items() if part.get(k) is not None}
    if (f := _section(d, "faithfulness")) is not None:
        meta["faithfulness"] = {k: _number(f.get(k), f"faithfulness.{k}", allow_null=True)
                                for k in ("metric_clean", "metric_corrupted", "metric_circuit", "normalized")}
    return meta
