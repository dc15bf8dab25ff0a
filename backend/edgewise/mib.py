"""MIB's circuit-localization scores, CPR and CMD (Mueller et al. 2025, the MIB circuit track's
`evaluate_area_under_curve`), on any model and prompt pairs.

For each fraction p in MIB_FRACTIONS the top int(p·E) of the E edges, pruned to those on some
input → logits path (circuit.prune_connected, as MIB's `apply_topn(..., prune=True)`), are
evaluated; faithfulness f = (m_circuit − m_empty) / (m_full − m_empty), m_empty the run with every
edge ablated, m_full the clean run. With the trapezoid over p (linear, from 0.001 to 1):

    CPR = Σ_i (p_{i+1} − p_i) (f_i + f_{i+1}) / 2                    edges ranked by signed score
    CMD = Σ_i (p_{i+1} − p_i) (|1 − f_i| + |1 − f_{i+1}|) / 2        edges ranked by |score|

Higher CPR and lower CMD are better. MIB attributes the loss (−metric) and ranks its signed scores
high to low; edgewise's score approximates the change in the metric, so that order is edgewise's
most negative score first (the edges whose ablation lowers the metric most).
"""
from __future__ import annotations

import math

import torch

from .circuit import prune_connected
from .evaluate import MIB_FRACTIONS, CircuitEvaluator, top_k_masks
from .graph import Graph


def mib_area(fractions, values) -> float:
    """Trapezoid area of values over fractions (MIB's loop, linear x)."""
    return sum((fractions[i + 1] - fractions[i]) * (values[i] + values[i + 1]) / 2 for i in range(len(values) - 1))


def mib_masks(graph: Graph, scores: torch.Tensor) -> list[torch.Tensor]:
    """The 2 × len(MIB_FRACTIONS) kept-edge masks MIB evaluates: the top int(p·E) edges by signed
    score (most negative first), then by |score|, each pruned to connected edges. A caller that
    evaluates them in pieces (the server, between interactive requests) hands the values to
    `mib_result`; `mib_scores` does both."""
    if len(scores) != graph.n_edges:
        raise ValueError(f"scores has {len(scores)} entries, the model has {graph.n_edges} edges")
    ks = [int(p * graph.n_edges) for p in MIB_FRACTIONS]
    signed = [prune_connected(graph, m) for m in top_k_masks(graph, scores, ks, signed=True)]
    absolute = [prune_connected(graph, m) for m in top_k_masks(graph, scores, ks)]
    return signed + absolute


def mib_result(graph: Graph, masks: list[torch.Tensor], values: list[float], metric_clean: float,
               metric_empty: float) -> dict:
    """CPR, CMD and their points from the mean metric of each of `mib_masks`' masks."""
    ks = [int(p * graph.n_edges) for p in MIB_FRACTIONS]
    gap = metric_clean - metric_empty
    faith = [None if gap == 0 else (v - metric_empty) / gap for v in values]

    def points(ms, fs):
        return [{"fraction": p, "k": k, "n_edges": int(m.sum()), "faithfulness": f}
                for p, k, m, f in zip(MIB_FRACTIONS, ks, ms, fs)]

    n = len(ks)
    f_signed, f_abs = faith[:n], faith[n:]
    defined = gap != 0 and all(f is not None and math.isfinite(f) for f in faith)
    return {"cpr": mib_area(MIB_FRACTIONS, f_signed) if defined else None,
            "cmd": mib_area(MIB_FRACTIONS, [abs(1 - f) for f in f_abs]) if defined else None,
            "points": points(masks[:n], f_signed), "points_abs": points(masks[n:], f_abs),
            "metric_clean": metric_clean, "metric_empty": metric_empty}


def mib_scores(model, pairs, scores: torch.Tensor, metric="logit_diff", ablation: str = "resample",
               batch_size: int = 32, progress=None, evaluator: CircuitEvaluator | None = None) -> dict:
    """{"cpr", "cmd", "points": [{"fraction", "k", "n_edges", "faithfulness"}], "points_abs": [...]}:
    `points` rank edges by signed score (CPR), `points_abs` by |score| (CMD); k = int(p·E) edges
    before pruning, n_edges after. scores: one per graph edge. `evaluator` (same model, pairs,
    metric, ablation) reuses its cached runs. Faithfulness, CPR and CMD are None when the clean and
    the ablated metric are equal."""
    graph = evaluator.graph if evaluator is not None else Graph.from_model(model)
    masks = mib_masks(graph, scores)
    ev = evaluator or CircuitEvaluator(model, pairs, metric, ablation, batch_size)
    values = ev.metrics(masks, progress)
    return mib_result(graph, masks, values, ev.metric_clean, ev.metric_corrupted)
