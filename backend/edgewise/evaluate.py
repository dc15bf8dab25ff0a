"""Circuit evaluation: faithfulness of a kept edge set, the faithfulness curve, ROC/AUC.

    normalized faithfulness = (metric_circuit − metric_corrupted) / (metric_clean − metric_corrupted)

metric_circuit runs the clean prompts with every edge *outside* the circuit patched to its
ablated source (see patching.py); metric_corrupted patches every edge (for resample ablation:
the corrupted run itself). 1 = the circuit alone recovers the clean behaviour, 0 = none of it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from .activations import ABLATIONS, ablated_acts, edge_hooks_enabled, is_bidirectional, source_means
from .circuit import Circuit
from .graph import Graph
from .metrics import get_metric
from .patching import run_patched


@dataclass
class Faithfulness:
    metric_clean: float
    metric_corrupted: float
    metric_circuit: float
    n_edges: int

    @property
    def normalized(self) -> float:
        gap = self.metric_clean - self.metric_corrupted
        return (self.metric_circuit - self.metric_corrupted) / gap if gap != 0 else math.nan

    def to_dict(self) -> dict:
        d = asdict(self)
        d["normalized"] = None if math.isnan(self.normalized) else self.normalized
        return d


def keep_mask(graph: Graph, circuit) -> torch.Tensor:
    """Circuit | edge names | bool mask → bool [n_sources, n_inputs] of kept edges."""
    if isinstance(circuit, Circuit):
        if circuit.graph.cfg.n_layers != graph.cfg.n_layers or circuit.graph.cfg.n_heads != graph.cfg.n_heads:
            raise ValueError(f"circuit is for {circuit.graph.cfg}, the model is {graph.cfg}")
        return circuit.in_graph
    if isinstance(circuit, torch.Tensor):
        return circuit.bool() & graph.edge_mask
    return graph.mask_from_edges(circuit)


class CircuitEvaluator:
    """Faithfulness of many circuits on one dataset. The clean and ablated runs of each batch are
    done once; with `cache=True` their results (`[n_sources, B, P, d]` per batch) are kept, so each
    later circuit costs one patched forward pass per batch (what the web view's slider needs)."""

    def __init__(self, model, pairs, metric="logit_diff", ablation="resample", batch_size: int = 32,
                 cache: bool = False):
        if ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation {ablation!r}; choose from {', '.join(ABLATIONS)}")
        self.model, self.pairs, self.batch_size, self.cache = model, pairs, batch_size, cache
        self.graph = Graph.from_model(model)
        self.metric, self.ablation = get_metric(metric), ablation
        self.split = is_bidirectional(model)
        self._kept: list | None = None
        self.metric_clean = self.metric_corrupted = None

    def _batches(self):
        """(batch, ablated source activations) per batch; the first pass also sums the baselines."""
        if self._kept is not None:
            yield from self._kept
            return
        model, graph, m = self.model, self.graph, self.metric
        device = model.cfg.device
        means = (source_means(model, graph, self.pairs, self.batch_size, device, self.split)
                 if self.ablation == "mean" else None)
        clean = corrupted = 0.0
        kept = []
        for batch in self.pairs.batches(self.batch_size, device, self.split):
            abl, corrupted_logits = ablated_acts(model, graph, batch, self.ablation, means)
            batch.clean_logits = model(batch.clean)
            clean += float(m(batch.clean_logits, batch).sum())
            if corrupted_logits is None:  # zero / mean: the fully ablated model
                corrupted_logits = run_patched(model, graph, batch, abl, graph.edge_mask)
            corrupted += float(m(corrupted_logits, batch).sum())
            if self.cache:
                kept.append((batch, abl))
            yield batch, abl
        self.metric_clean, self.metric_corrupted = clean / len(self.pairs), corrupted / len(self.pairs)
        if self.cache:
            self._kept = kept

    def metrics(self, masks, progress=None) -> list[float]:
        """Mean metric over pairs with each kept-edge mask ([n_sources, n_inputs] bool)."""
        graph, m = self.graph, self.metric
        totals = [0.0] * len(masks)
        n_batches = self.pairs.n_batches(self.batch_size, self.split)
        with edge_hooks_enabled(self.model), torch.no_grad():
            for b, (batch, abl) in enumerate(self._batches()):
                for j, keep in enumerate(masks):
                    removed = graph.edge_mask & ~keep
                    logits = (batch.clean_logits if not removed.any()
                              else run_patched(self.model, graph, batch, abl, removed))
                    totals[j] += float(m(logits, batch).sum())
                    if progress:
                        progress((b + (j + 1) / len(masks)) / n_batches)
        return [t / len(self.pairs) for t in totals]

    def faithfulness(self, circuit, progress=None) -> Faithfulness:
        keep = keep_mask(self.graph, circuit)
        (value,) = self.metrics([keep], progress)
        return Faithfulness(self.metric_clean, self.metric_corrupted, value, int(keep.sum()))


def evaluate_masks(model, pairs, masks, metric="logit_diff", ablation="resample", batch_size: int = 32,
                   progress=None) -> tuple[float, float, list[float]]:
    """Mean metric over pairs on the clean run, the fully ablated run, and each kept-edge mask.
    One data loop: each batch's ablated activations serve every mask."""
    ev = CircuitEvaluator(model, pairs, metric, ablation, batch_size)
    values = ev.metrics(masks, progress)
    return ev.metric_clean, ev.metric_corrupted, values


def evaluate(model, pairs, circuit, metric="logit_diff", ablation="resample", batch_size: int = 32,
             progress=None) -> Faithfulness:
    """Faithfulness of `circuit` (a Circuit, edge names, or a bool mask) on `pairs`."""
    return CircuitEvaluator(model, pairs, metric, ablation, batch_size).faithfulness(circuit, progress)


def log_spaced_ks(n_edges: int, n_points: int = 24) -> list[int]:
    """0, then ~n_points sizes from 1 to n_edges spaced evenly in log(k)."""
    if n_edges <= 0:
        return [0]
    ks = torch.logspace(0, math.log10(n_edges), n_points).round().long().tolist()
    return sorted({0, n_edges, *ks})


def faithfulness_curve(model, pairs, scores: torch.Tensor, metric="logit_diff", ablation="resample",
                       ks: list[int] | None = None, batch_size: int = 32, progress=None) -> list[dict]:
    """Normalized faithfulness of the top-k circuit (by |score|) for each k. scores: one per graph edge."""
    graph = Graph.from_model(model)
    ks = ks or log_spaced_ks(graph.n_edges)
    masks = [Circuit.from_scores(graph, scores, top_k=k).in_graph for k in ks]
    clean, corrupted, values = evaluate_masks(model, pairs, masks, metric, ablation, batch_size, progress)
    return [{"k": k, **Faithfulness(clean, corrupted, v, k).to_dict()} for k, v in zip(ks, values)]


def roc_auc(scores: torch.Tensor, truth: torch.Tensor, noise_floor: float = 1e-6):
    """ROC of ranking edges by |score| against a known edge set, over the graph's real edges.

    |score| below noise_floor × max|score| counts as 0; tied scores form one diagonal step, so a
    tie counts half (the trapezoid). Returns (fpr, tpr, auc), the curve from (0, 0) to (1, 1).
    """
    s = scores.detach().abs().double().cpu()
    t = truth.bool().cpu()
    if s.shape != t.shape:
        raise ValueError(f"scores has {s.shape[0]} edges, truth {t.shape[0]}")
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC needs at least one edge in and one edge outside the known circuit")
    if s.max() > 0:
        s = torch.where(s < noise_floor * s.max(), torch.zeros_like(s), s)
    values, inverse = torch.unique(s, sorted=True, return_inverse=True)  # ascending distinct scores
    tp = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, t.double())
    fp = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, (~t).double())
    tpr = torch.cat([torch.zeros(1, dtype=torch.float64), tp.flip(0).cumsum(0) / n_pos])  # thresholds from high to low
    fpr = torch.cat([torch.zeros(1, dtype=torch.float64), fp.flip(0).cumsum(0) / n_neg])
    auc = float(torch.trapezoid(tpr, fpr))
    return fpr.tolist(), tpr.tolist(), auc
