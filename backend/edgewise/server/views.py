"""Ranked views of a scored run: edge lists, selections, circuit JSON.

The stored float64 blob is the truth; its |score| ranking is computed once per run and cached. No
per-edge Python object exists beyond the edges a request returns: an edge's source and input slot
come from its position by arithmetic (`EdgeLayout`), so a Llama-3-8B-sized graph (1.6 M edges) costs
a few arrays, and long answers are written in chunks.
"""
from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np
import torch

from ..circuit import FORMAT, Circuit, prune_connected
from ..graph import Graph, GraphConfig
from .engine import LRU, finite
from .store import Store

CHUNK = 20_000  # edges per chunk of a streamed answer


@lru_cache(maxsize=8)
def graph_for(cfg: GraphConfig) -> Graph:
    return Graph(cfg)


@dataclass(frozen=True)
class EdgeLayout:
    """Edge position ↔ (source row, input column), without listing the edges.

    Edges are the row-major entries of `edge_mask`, and source s feeds the input slots i with
    n_upstream[i] > s: a suffix of the inputs, since n_upstream never decreases. So row s starts at
    edge position row_start[s] and covers inputs first_input[s] .. n_inputs − 1."""

    row_start: np.ndarray  # int64 [n_sources + 1]
    first_input: np.ndarray  # int64 [n_sources]
    src: np.ndarray  # object [n_sources]: source node names
    dst: np.ndarray  # object [n_inputs]: the node each input slot belongs to
    qkv: np.ndarray  # object [n_inputs]: "q" / "k" / "v" / None
    slot: np.ndarray  # object [n_inputs]: input slot names, e.g. "a1.h0<k>"
    qkv_json: np.ndarray  # object [n_inputs]: '"q"' … 'null'

    @classmethod
    def of(cls, g: Graph) -> "EdgeLayout":
        up = g.n_upstream.numpy()
        first = np.searchsorted(up, np.arange(g.n_sources), side="right")
        row_start = np.concatenate([[0], np.cumsum(g.n_inputs - first)])
        parts = [Graph.split_edge(f"input->{n}") for n in g.input_names]
        obj = lambda xs: np.array(xs, dtype=object)  # noqa: E731
        qkv = obj([p[2] for p in parts])
        return cls(row_start, first, obj(g.source_names), obj([p[1] for p in parts]), qkv, obj(g.input_names),
                   obj([json.dumps(q) for q in qkv]))

    def locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(source rows, input columns) of edge positions."""
        s = np.searchsorted(self.row_start, positions, side="right") - 1
        return s, self.first_input[s] + (positions - self.row_start[s])


@lru_cache(maxsize=8)
def edge_layout(cfg: GraphConfig) -> EdgeLayout:
    return EdgeLayout.of(graph_for(cfg))


def graph_config(cfg: dict) -> GraphConfig:
    return GraphConfig.from_model(cfg)


@dataclass
class RunScores:
    cfg: GraphConfig
    scores: np.ndarray  # float64 [n_edges], graph edge order
    order: np.ndarray  # int32 edge positions by |score| descending, ties in graph order
    in_graph: np.ndarray | None  # an imported circuit's own selection

    @property
    def graph(self) -> Graph:
        return graph_for(self.cfg)

    def select(self, top_k: int | None = None, min_abs_score: float | None = None, own: bool = False,
               connected: bool = False) -> np.ndarray:
        """Positions of the selected edges, ranked. `own`: an imported circuit's in_graph edges.
        top_k and min_abs_score together: the top k of those passing the threshold; neither: every edge.
        `connected`: then only the edges on an input → logits path of the selection (the engine's
        prune_connected, EAP-IG's prune)."""
        order = self.order
        if own and self.in_graph is not None:
            order = order[self.in_graph[order]]
        if min_abs_score is not None:
            order = order[np.abs(self.scores[order]) >= min_abs_score]
        if top_k is not None:
            order = order[:top_k]
        if connected and len(order):
            kept = prune_connected(self.graph, self.keep_mask(order))
            s, i = edge_layout(self.cfg).locate(order.astype(np.int64))
            order = order[kept[torch.from_numpy(s), torch.from_numpy(i)].numpy()]
        return order

    def edge_chunks(self, picked: np.ndarray) -> Iterator[str]:
        """The JSON objects {name, src, dst, qkv, score} of the picked edges, comma-joined, in chunks.
        Written directly: names are [a-z0-9.<>-] only and a finite float's repr is JSON."""
        lay = edge_layout(self.cfg)
        for start in range(0, len(picked), CHUNK):
            pos = picked[start:start + CHUNK].astype(np.int64)
            s, i = lay.locate(pos)
            src, dst, slot = lay.src[s].tolist(), lay.dst[i].tolist(), lay.slot[i].tolist()
            qkv, x = lay.qkv_json[i].tolist(), self.scores[pos].tolist()
            yield ("," if start else "") + ",".join(
                f'{{"name":"{a}->{b}","src":"{a}","dst":"{d}","qkv":{q},"score":{_num(v)}}}'
                for a, b, d, q, v in zip(src, slot, dst, qkv, x))

    def keep_mask(self, picked: np.ndarray) -> torch.Tensor:
        """Bool [n_sources, n_inputs] of the picked edges."""
        mask = torch.zeros_like(self.graph.edge_mask)
        s, i = edge_layout(self.cfg).locate(np.asarray(picked, dtype=np.int64))
        mask[torch.from_numpy(s), torch.from_numpy(i)] = True
        return mask

    def circuit_chunks(self, picked: np.ndarray, meta: dict) -> Iterator[str]:
        """The circuit JSON (`Circuit.to_json`'s content: EAP-IG's cfg, nodes, edges) with exactly the
        picked edges in_graph, every edge listed with its score, written in chunks."""
        g, lay = self.graph, edge_layout(self.cfg)
        keep = np.zeros(len(self.scores), dtype=bool)
        keep[picked] = True
        nodes = Circuit(g, self.keep_mask(picked)).nodes_in_graph()
        head = {"format": FORMAT, "cfg": self.cfg.to_dict(), **{k: v for k, v in meta.items() if v not in (None, "", {})},
                "nodes": {n: {"in_graph": bool(v)} for n, v in nodes.items()}}
        yield json.dumps(head, allow_nan=False)[:-1] + ',"edges":{'
        for start in range(0, len(self.scores), CHUNK):
            pos = np.arange(start, min(start + CHUNK, len(self.scores)))
            s, i = lay.locate(pos)
            yield ("," if start else "") + ",".join(
                f'"{a}->{b}":{{"score":{_num(v)},"in_graph":{"true" if k else "false"}}}'
                for a, b, v, k in zip(lay.src[s].tolist(), lay.slot[i].tolist(), self.scores[pos].tolist(),
                                      keep[pos].tolist()))
        yield "}}"


def _num(x: float) -> str:
    return repr(x) if math.isfinite(x) else "null"


class ScoreViews:
    """RunScores per scored run, least recently used evicted (a run's scores never change once stored)."""

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
        order = np.argsort(-np.abs(scores), kind="stable").astype(np.int32)
        view = RunScores(graph_config(run["cfg"]), scores, order, in_graph)
        with self._lock:
            return self._cache.put(run["id"], view)

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._cache.pop(run_id, None)


# ---------------------------------------------------------------- per-pair table
def _decode(tokenizer, ids: list[int]) -> tuple[str | list[int], list[str]]:
    """(text, token strings) of token ids: special tokens (BOS) are in the tokens, not the text; a
    model without a tokenizer shows the ids."""
    if tokenizer is None:
        return list(ids), [str(t) for t in ids]
    return tokenizer.decode(ids, skip_special_tokens=True), [tokenizer.decode([t]) for t in ids]


def pair_rows(pairs, tokenizer, values: dict, limit: int | None = None) -> list[dict]:
    """Rows of the per-pair table, worst first: by the pair's normalized faithfulness
    (m_circuit − m_corrupted) / (m_clean − m_corrupted), ascending; pairs where clean = corrupted last.
    values: {"clean", "corrupted", "circuit"} metric lists in pair order."""
    rows = []
    for i, (c, x, m) in enumerate(zip(values["clean"], values["corrupted"], values["circuit"])):
        gap = c - x
        rows.append((i, c, x, m, (m - x) / gap if gap != 0 and math.isfinite(gap) else None))
    rows.sort(key=lambda r: (r[4] is None or not math.isfinite(r[4]), r[4] if r[4] is not None else 0.0))
    out = []
    for i, c, x, m, norm in rows[:limit]:
        clean, clean_tokens = _decode(tokenizer, pairs.clean[i])
        corrupted, corrupted_tokens = _decode(tokenizer, pairs.corrupted[i])
        answer = wrong = None
        if pairs.answer is not None:
            answer, wrong = (_decode(tokenizer, [t])[0] if tokenizer is not None else t
                             for t in (pairs.answer[i], pairs.wrong_answer[i]))
        out.append({"index": i, "clean": clean, "corrupted": corrupted, "answer": answer, "wrong_answer": wrong,
                    "clean_tokens": clean_tokens, "corrupted_tokens": corrupted_tokens,
                    **finite({"metric_clean": c, "metric_corrupted": x, "metric_circuit": m, "normalized": norm})})
    return out
