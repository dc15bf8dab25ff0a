"""Ranked views of a finished run's scores: edge lists, selections, circuits.

The stored float64 blob is the truth; its |score| ranking (numpy argsort) is computed once per run
and cached, and dicts are built only for the edges a request returns.
"""
from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..circuit import Circuit
from ..graph import Graph, GraphConfig
from .engine import LRU
from .store import Store


@dataclass(frozen=True)
class EdgeNames:
    """Per edge (graph edge order), as object arrays so a selection is one fancy-index."""

    names: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    qkv: np.ndarray
    qkv_json: np.ndarray  # '"q"' / '"k"' / '"v"' / 'null'


@lru_cache(maxsize=16)
def graph_for(cfg: GraphConfig) -> Graph:
    return Graph(cfg)


@lru_cache(maxsize=16)
def edge_names(cfg: GraphConfig) -> EdgeNames:
    g = graph_for(cfg)
    s, i = g.edge_index[:, 0].numpy(), g.edge_index[:, 1].numpy()
    inputs = [Graph.split_edge(f"input->{n}") for n in g.input_names]  # slot name -> (node, q/k/v or None)
    obj = lambda xs: np.array(xs, dtype=object)  # noqa: E731
    qkv = obj([p[2] for p in inputs])[i]
    return EdgeNames(obj(g.edge_names), obj(g.source_names)[s], obj([p[1] for p in inputs])[i], qkv,
                     obj([json.dumps(q) for q in qkv]))


def graph_config(cfg: dict) -> GraphConfig:
    return GraphConfig.from_model(cfg)


@dataclass
class RunScores:
    cfg: GraphConfig
    scores: np.ndarray  # float64 [n_edges], graph edge order
    order: np.ndarray  # edge positions by |score| descending, ties in graph order
    in_graph: np.ndarray | None  # an imported circuit's own selection

    @property
    def graph(self) -> Graph:
        return graph_for(self.cfg)

    def select(self, top_k: int | None = None, min_abs_score: float | None = None) -> np.ndarray:
        """Positions of the selected edges, ranked. Neither given: every edge."""
        order = self.order
        if min_abs_score is not None:
            n = int((np.abs(self.scores) >= min_abs_score).sum())  # ranked, so the passing edges lead
            order = order[:n]
        if top_k is not None:
            order = order[:top_k]
        return order

    def edges_json(self, picked: np.ndarray) -> str:
        """The JSON list of {name, src, dst, qkv, score}, written directly: edge and node names are
        [a-z0-9.<>-] only and a finite float's repr is JSON, so no escaping is needed (2x faster than
        dicts + json.dumps on 32k edges)."""
        en = edge_names(self.cfg)
        scores = self.scores[picked]
        if not np.isfinite(scores).all():
            return json.dumps([{"name": n, "src": s, "dst": d, "qkv": q, "score": x if math.isfinite(x) else None}
                               for n, s, d, q, x in zip(en.names[picked], en.src[picked], en.dst[picked],
                                                        en.qkv[picked], scores.tolist())])
        cols = (en.names[picked].tolist(), en.src[picked].tolist(), en.dst[picked].tolist(),
                en.qkv_json[picked].tolist(), scores.tolist())
        return "[" + ",".join([f'{{"name":"{n}","src":"{s}","dst":"{d}","qkv":{q},"score":{x!r}}}'
                               for n, s, d, q, x in zip(*cols)]) + "]"

    def keep_mask(self, picked: np.ndarray) -> torch.Tensor:
        """Bool [n_sources, n_inputs] of the picked edges."""
        g = self.graph
        keep = torch.zeros(g.n_edges, dtype=torch.bool)
        keep[torch.from_numpy(np.ascontiguousarray(picked, dtype=np.int64))] = True
        mask = torch.zeros_like(g.edge_mask)
        mask[g.edge_mask] = keep
        return mask

    def circuit(self, mask: torch.Tensor, **meta) -> Circuit:
        return Circuit(self.graph, mask, torch.from_numpy(self.scores.copy()), **meta)


class ScoreViews:
    """RunScores per finished run, least recently used evicted (a run's scores never change once done)."""

    def __init__(self, store: Store, size: int = 8):
        self.store = store
        self._cache = LRU(size)
        self._lock = threading.Lock()

    def get(self, run: dict) -> RunScores | None:
        with self._lock:
            hit = self._cache.hit(run["id"])
        if hit is not None:
            return hit
        scores, in_graph = self.store.get_scores(run["id"])
        if scores is None or not run.get("cfg"):
            return None
        order = np.argsort(-np.abs(scores), kind="stable")
        view = RunScores(graph_config(run["cfg"]), scores, order, in_graph)
        with self._lock:
            return self._cache.put(run["id"], view)
