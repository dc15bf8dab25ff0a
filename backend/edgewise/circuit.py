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
        """Read an edgewise or EAP-IG circuit; a ValueError names what is wrong."""
        if isinstance(text, dict):
            d = text
        else:
            try:
                d = json.loads(text)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"circuit file is not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise ValueError("circuit JSON must be an object with cfg, nodes and edges")
        missing = [k for k in ("cfg", "edges") if k not in d]
        if missing:
            raise ValueError(f"circuit JSON lacks {', '.join(repr(k) for k in missing)} (EAP-IG and edgewise files have cfg, nodes, edges)")
        cfg = dict(d["cfg"])
        if "attn_only" not in cfg:  # EAP-IG files: MLP nodes present unless the model has none
            cfg["attn_only"] = not any(k.startswith("m") for k in d.get("nodes", {})) and \
                not any("->m" in e or e.startswith("m") for e in d["edges"])
        try:
            graph = Graph(GraphConfig.from_model(cfg))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"circuit cfg is incomplete or invalid ({e}); needs n_layers and n_heads") from None
        if not isinstance(d["edges"], dict):
            raise ValueError('"edges" must map edge names to {"score", "in_graph"}')
        scores = torch.zeros(graph.n_edges, dtype=torch.float64)
        in_graph = torch.zeros_like(graph.edge_mask)
        for name, info in d["edges"].items():
            s, i = graph.edge_matrix_index(name)
            if not isinstance(info, dict):
                raise ValueError(f"edge {name!r}: expected an object with score and in_graph")
            score = info.get("score", 0.0)
            if not isinstance(score, (int, float)) or (isinstance(score, float) and math.isnan(score)):
                raise ValueError(f"edge {name!r}: score must be a number, got {score!r}")
            scores[graph.edge_position[name]] = float(score)
            in_graph[s, i] = bool(info.get("in_graph", False))
        meta = {k: d[k] for k in ("model", "method", "metric", "dataset", "selection", "faithfulness") if k in d}
        return cls(graph, in_graph, scores, **meta)
