"""Circuit evaluation: faithfulness of a kept edge set, the faithfulness curve, ROC/AUC.

    normalized faithfulness = (metric_circuit − metric_corrupted) / (metric_clean − metric_corrupted)

metric_circuit runs the clean prompts with every edge *outside* the circuit patched to its
ablated source (see patching.py); metric_corrupted patches every edge (for resample ablation:
the corrupted run itself). 1 = the circuit alone recovers the clean behaviour, 0 = none of it.
Metric values are summed in float64 whatever the model's dtype.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from .activations import ABLATIONS, ablated_acts, edge_hooks_enabled, is_bidirectional, per_model, source_means
from .circuit import Circuit, rank_edges
from .graph import Graph
from .metrics import get_metric
from .patching import Patcher

# MIB's circuit-localization fractions of edges (Mueller et al. 2025, `evaluate_area_under_curve`)
MIB_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


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
        return circuit.bool().cpu() & graph.edge_mask
    return graph.mask_from_edges(circuit)


@dataclass
class _Prepared:
    """One batch, ready for any number of circuits."""

    batch: object
    abl: object            # patching.Ablated
    clean: torch.Tensor     # [B] float64 metric per pair
    corrupted: torch.Tensor

    def nbytes(self) -> int:
        t = [self.abl.acts, self.abl.head_sums] + ([self.batch.clean_logits] if self.batch.clean_logits is not None else [])
        return sum(x.numel() * x.element_size() for x in t)


class CircuitEvaluator:
    """Faithfulness of many circuits on one dataset. Each batch's clean and ablated runs are done
    once per call, or once at all with `cache=True`: then each batch's ablated activations
    ([n_sources, B, P, d]) are kept while they fit `cache_bytes` (default 1 GiB), the batches past
    it recomputed at every call, so memory stays bounded and later circuits cost one patched
    forward per batch (several circuits stack into one forward, up to `stack_bytes` of buffers).

    Mean ablation uses each source's mean over the whole dataset; pass `means` (e.g. summed over
    shards with activations.source_mean_sums) or they are computed from `pairs`.
    """

    def __init__(self, model, pairs, metric="logit_diff", ablation="resample", batch_size: int = 32,
                 cache: bool = False, cache_bytes: int = 1 << 30, stack_bytes: int = 256 << 20,
                 means: torch.Tensor | None = None):
        if ablation not in ABLATIONS:
            raise ValueError(f"unknown ablation {ablation!r}; choose from {', '.join(ABLATIONS)}")
        self.model, self.pairs, self.batch_size, self.cache = model, pairs, batch_size, cache
        self.cache_bytes, self.stack_bytes = cache_bytes, stack_bytes
        self.graph = Graph.from_model(model)
        self.metric, self.ablation = get_metric(metric), ablation
        self.split = is_bidirectional(model)
        self.means = means
        self.patcher = per_model(model, Patcher, Patcher)
        self._cached: dict[int, _Prepared] = {}  # chunk number -> prepared batch
        self._cached_bytes = 0
        self.metric_clean = self.metric_corrupted = None

    @property
    def n_cached(self) -> int:
        """Batches whose clean and ablated runs are kept (cache=True, within cache_bytes)."""
        return len(self._cached)

    def chunks(self) -> list[list[int]]:
        """Pair indices of each batch (PromptPairs._chunks), the unit of `metric_sums`."""
        return self.pairs._chunks(self.batch_size, self.split)

    # ---------------------------------------------------------------- one batch
    def _prepare(self, number: int, idx: list[int]) -> _Prepared:
        if number in self._cached:
            return self._cached[number]
        model, graph, m = self.model, self.graph, self.metric
        if self.ablation == "mean" and self.means is None:
            self.means = source_means(model, graph, self.pairs, self.batch_size, model.cfg.device, self.split)
        batch = self.pairs._batch(idx, model.cfg.device)
        acts, corrupted_logits = ablated_acts(model, graph, batch, self.ablation, self.means)
        abl = self.patcher.prepare(acts)
        del acts
        clean_logits = model(batch.clean)
        batch.clean_logits = clean_logits
        clean = m(clean_logits, batch).double()
        if corrupted_logits is None:  # zero / mean: the fully ablated model
            corrupted_logits = self.patcher.logits(batch, abl, graph.edge_mask)[0]
        corrupted = m(corrupted_logits, batch).double()
        del corrupted_logits
        if not m.needs_clean_logits:
            batch.clean_logits = None  # kept only for metrics that read it (kl)
        prep = _Prepared(batch, abl, clean.cpu(), corrupted.cpu())
        if self.cache and self._cached_bytes + prep.nbytes() <= self.cache_bytes:
            self._cached[number] = prep
            self._cached_bytes += prep.nbytes()
        return prep

    def _circuit_values(self, prep: _Prepared, masks: list[torch.Tensor], progress=None) -> list[torch.Tensor]:
        """Metric per pair [B] (float64) with each kept-edge mask, circuits stacked C to a forward."""
        g, m, batch = self.graph, self.metric, prep.batch
        B, P = batch.clean.shape
        per = (1 + g.n_sources) * B * P * g.cfg.d_model * prep.abl.acts.element_size() \
            + B * P * self.model.cfg.d_vocab * 4
        C = max(1, min(32, self.stack_bytes // per))
        removed = [g.edge_mask & ~keep for keep in masks]
        out: list = [None] * len(masks)
        todo, first = [], {}  # identical masks (e.g. MIB's small fractions) are run once
        for j, r in enumerate(removed):
            if not r.any():
                out[j] = prep.clean  # nothing removed: the clean run
            else:
                key = r.numpy().tobytes()
                if key not in first:
                    first[key] = j
                    todo.append(j)
        same = {j: first[removed[j].numpy().tobytes()] for j in range(len(masks)) if out[j] is None}
        if batch.clean_logits is None and m.needs_clean_logits:
            batch.clean_logits = self.model(batch.clean)
        for k0 in range(0, len(todo), C):
            group = todo[k0:k0 + C]
            logits = self.patcher.logits(batch, prep.abl, torch.stack([removed[j] for j in group]))
            for j, lg in zip(group, logits):
                out[j] = m(lg, batch).double().cpu()
            del logits
            if progress and k0 + C < len(todo):
                progress((k0 + C) / len(todo))
        return [out[same[j]] if out[j] is None else out[j] for j in range(len(masks))]

    def _batches(self, chunks):
        for number, idx in chunks:
            prep = self._prepare(number, idx)
            yield prep
            del prep

    # ---------------------------------------------------------------- the API
    def metric_sums(self, masks, chunks=None, progress=None) -> dict:
        """Seam for sharding: Σ over the pairs of `chunks` (default: every batch; else indices into
        self.chunks()) of the clean, fully ablated and each mask's metric, in float64:
        {"clean", "corrupted", "circuits": [...], "count"}. Shards add their sums."""
        all_chunks = self.chunks()
        numbers = range(len(all_chunks)) if chunks is None else chunks
        todo = [(n, all_chunks[n]) for n in numbers]
        masks = [keep_mask(self.graph, k) for k in masks]
        sums = {"clean": 0.0, "corrupted": 0.0, "circuits": [0.0] * len(masks), "count": 0}
        with edge_hooks_enabled(self.model), torch.no_grad():
            b = -1
            for prep in self._batches(todo):  # not enumerate(): its result tuple would keep this batch alive into the next
                b += 1
                step = (lambda f, b=b: progress((b + f) / len(todo))) if progress else None
                values = self._circuit_values(prep, masks, step)
                sums["clean"] += float(prep.clean.sum())
                sums["corrupted"] += float(prep.corrupted.sum())
                for j, v in enumerate(values):
                    sums["circuits"][j] += float(v.sum())
                sums["count"] += len(prep.clean)
                del prep, values  # before the next batch is prepared
                if progress:
                    progress((b + 1) / len(todo))
        return sums

    def metrics(self, masks, progress=None) -> list[float]:
        """Mean metric over pairs with each kept-edge mask ([n_sources, n_inputs] bool); also sets
        metric_clean and metric_corrupted."""
        s = self.metric_sums(masks, progress=progress)
        self.metric_clean, self.metric_corrupted = s["clean"] / s["count"], s["corrupted"] / s["count"]
        return [v / s["count"] for v in s["circuits"]]

    def faithfulness(self, circuit, progress=None) -> Faithfulness:
        keep = keep_mask(self.graph, circuit)
        (value,) = self.metrics([keep], progress)
        return Faithfulness(self.metric_clean, self.metric_corrupted, value, int(keep.sum()))

    def per_pair(self, circuit, progress=None) -> dict[str, torch.Tensor]:
        """Metric of every pair, in pair order (float64 [n_pairs]): the clean run, the fully
        ablated run and the circuit. Pair i's values equal `evaluate` on that pair alone."""
        keep = keep_mask(self.graph, circuit)
        n = len(self.pairs)
        out = {k: torch.zeros(n, dtype=torch.float64) for k in ("clean", "corrupted", "circuit")}
        chunks = list(enumerate(self.chunks()))
        with edge_hooks_enabled(self.model), torch.no_grad():
            b = -1
            for prep in self._batches(chunks):
                b += 1
                (value,) = self._circuit_values(prep, [keep])
                idx = prep.batch.index.cpu()
                out["clean"][idx], out["corrupted"][idx], out["circuit"][idx] = prep.clean, prep.corrupted, value
                del prep  # before the next batch is prepared
                if progress:
                    progress((b + 1) / len(chunks))
        self.metric_clean, self.metric_corrupted = float(out["clean"].mean()), float(out["corrupted"].mean())
        return out


def evaluate_masks(model, pairs, masks, metric="logit_diff", ablation="resample", batch_size: int = 32,
                   progress=None) -> tuple[float, float, list[float]]:
    """Mean metric over pairs on the clean run, the fully ablated run, and each kept-edge mask.
    One data loop: each batch's ablated activations serve every mask."""
    ev = CircuitEvaluator(model, pairs, metric, ablation, batch_size)
    values = ev.metrics(masks, progress)
    return ev.metric_clean, ev.metric_corrupted, values


def evaluate(model, pairs, circuit, metric="logit_diff", ablation="resample", batch_size: int = 32,
             progress=None, workers: int | None = None, ray_address: str | None = None) -> Faithfulness:
    """Faithfulness of `circuit` (a Circuit, edge names, or a bool mask) on `pairs`; with `workers` or
    `ray_address`, sharded on Ray actors that load `model` by name (distributed.py)."""
    if workers is not None or ray_address is not None:
        from .distributed import evaluate as sharded

        return sharded(model, pairs, circuit, metric, ablation, batch_size, progress, workers, ray_address)
    return CircuitEvaluator(model, pairs, metric, ablation, batch_size).faithfulness(circuit, progress)


def log_spaced_ks(n_edges: int, n_points: int = 24) -> list[int]:
    """0, then ~n_points sizes from 1 to n_edges spaced evenly in log(k)."""
    if n_edges <= 0:
        return [0]
    ks = torch.logspace(0, math.log10(n_edges), n_points).round().long().tolist()
    return sorted({0, n_edges, *ks})


def curve_ks(n_edges: int, n_points: int = 24) -> list[int]:
    """The faithfulness curve's circuit sizes: log_spaced_ks plus int(p · n_edges) for every MIB
    fraction p, sorted, unique."""
    return sorted({*log_spaced_ks(n_edges, n_points), *(int(p * n_edges) for p in MIB_FRACTIONS)})


def top_k_masks(graph: Graph, scores: torch.Tensor, ks, signed: bool = False) -> list[torch.Tensor]:
    """The kept-edge mask of the top k edges (by |score|, or most negative first) for each k."""
    order = rank_edges(scores.detach().cpu(), signed=signed)
    masks = []
    for k in ks:
        keep = torch.zeros(graph.n_edges, dtype=torch.bool)
        keep[order[:k]] = True
        mask = torch.zeros_like(graph.edge_mask)
        mask[graph.edge_mask] = keep
        masks.append(mask)
    return masks


def faithfulness_curve(model, pairs, scores: torch.Tensor, metric="logit_diff", ablation="resample",
                       ks: list[int] | None = None, batch_size: int = 32, progress=None, workers: int | None = None,
                       ray_address: str | None = None) -> list[dict]:
    """Normalized faithfulness of the top-k circuit (by |score|) for each k (default `curve_ks`);
    each point: k, fraction = k / n_edges, metric_clean / _corrupted / _circuit, normalized.
    With `workers` or `ray_address`, sharded on Ray actors that load `model` by name (distributed.py)."""
    if workers is not None or ray_address is not None:
        from .distributed import faithfulness_curve as sharded

        return sharded(model, pairs, scores, metric, ablation, ks, batch_size, progress, workers, ray_address)
    graph = Graph.from_model(model)
    ks = ks or curve_ks(graph.n_edges)
    clean, corrupted, values = evaluate_masks(model, pairs, top_k_masks(graph, scores, ks), metric, ablation,
                                              batch_size, progress)
    return [{"k": k, "fraction": k / graph.n_edges, **Faithfulness(clean, corrupted, v, k).to_dict()}
            for k, v in zip(ks, values)]


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
