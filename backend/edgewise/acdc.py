"""ACDC (Conmy et al. 2023), the baseline EAP is compared against: prune edges one at a time.

Sweep the input slots from the logits backwards (reverse topological order); for each slot, try
its incoming edges from the latest source to the earliest. Each try patches one more edge to its
ablated value (resample / zero / mean) on top of the edges already removed, and

    removed for good  iff  |metric(graph without the edge) − metric(current graph)| ≤ τ

(ACDC's `abs_value_threshold` option; the metric is any edgewise metric, e.g. the task's). A node
whose outgoing edges are all removed reaches nothing, so its incoming edges go untested (ACDC skips
such nodes too). One patched forward pass per tried edge and batch: small models only.
Several τ give an ROC curve (`acdc_sweep`): an edge scores the largest τ at which it is kept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .circuit import Circuit
from .evaluate import CircuitEvaluator
from .graph import Graph


@dataclass
class AcdcResult:
    """One ACDC run at threshold `tau`. Matrices are [n_sources, n_inputs] like attribution's."""

    graph: Graph
    tau: float
    kept: torch.Tensor     # bool: the edges ACDC kept (the circuit)
    change: torch.Tensor   # float64: |Δmetric| when the edge was tried; 0 where it went untested
    tested: torch.Tensor   # bool: edges actually tried (the others hung off a dead node)
    metric_clean: float
    metric_corrupted: float
    metric_circuit: float  # the metric of the kept circuit, as ACDC last measured it
    metric: str = ""
    ablation: str = ""

    @property
    def edges(self) -> list[str]:
        """Names of the kept edges."""
        return self.graph.edges_from_mask(self.kept)

    @property
    def scores(self) -> torch.Tensor:
        """|Δmetric| each edge caused when tried, aligned with graph.edge_names."""
        return self.change[self.graph.edge_mask]

    @property
    def n_forward(self) -> int:
        """Patched forward passes per batch (tries), the cost that EAP's two or three passes replace."""
        return int(self.tested.sum())

    @property
    def normalized(self) -> float:
        gap = self.metric_clean - self.metric_corrupted
        return (self.metric_circuit - self.metric_corrupted) / gap if gap != 0 else math.nan

    def circuit(self) -> Circuit:
        return Circuit(self.graph, self.kept, self.scores, method="acdc", metric=self.metric,
                       selection={"tau": self.tau})


def _check_tau(tau) -> float:
    tau = float(tau)
    if not tau >= 0:
        raise ValueError(f"ACDC threshold tau must be ≥ 0, got {tau}")
    return tau


def acdc(model, pairs, metric="logit_diff", tau: float = 0.0, ablation: str = "resample",
         batch_size: int = 32, progress=None, evaluator: CircuitEvaluator | None = None) -> AcdcResult:
    """Run ACDC once at threshold `tau` (see module doc). progress(fraction) after every edge; it may
    raise to cancel. `evaluator` (a CircuitEvaluator with cache=True) shares clean/ablated runs
    between calls on the same model, pairs, metric and ablation."""
    tau = _check_tau(tau)
    ev = evaluator or CircuitEvaluator(model, pairs, metric, ablation, batch_size, cache=True)
    g = ev.graph
    keep = g.edge_mask.clone()
    change = torch.zeros(g.n_sources, g.n_inputs, dtype=torch.float64)
    tested = torch.zeros_like(keep)
    (current,) = ev.metrics([keep])  # the clean run
    node_of_input = [n.split("<")[0] for n in g.input_names]
    done = 0
    for i in reversed(range(g.n_inputs)):
        src = g.source_index.get(node_of_input[i])  # None for the logits
        alive = src is None or bool(keep[src].any())  # its outgoing edges were all tried already
        for s in reversed(range(int(g.n_upstream[i]))):
            keep[s, i] = False
            if alive:
                (value,) = ev.metrics([keep])
                change[s, i] = abs(value - current)
                tested[s, i] = True
                if change[s, i] <= tau:
                    current = value
                else:
                    keep[s, i] = True
            done += 1
            if progress:
                progress(done / g.n_edges)
    return AcdcResult(g, tau, keep, change, tested, ev.metric_clean, ev.metric_corrupted, current,
                      getattr(ev.metric, "name", str(metric)), ev.ablation)


@dataclass
class AcdcSweep:
    """ACDC at several thresholds; `scores` turn the sweep into one ranking for ROC/AUC."""

    graph: Graph
    taus: list[float]
    runs: list[AcdcResult] = field(repr=False)

    @property
    def matrix(self) -> torch.Tensor:
        """[n_sources, n_inputs]: the largest τ at which each edge is kept, 0 if never kept. (With
        τ = 0 in the sweep, an edge kept only at τ = 0 also scores 0.)"""
        out = torch.zeros(self.graph.n_sources, self.graph.n_inputs, dtype=torch.float64)
        for run in self.runs:
            out = torch.where(run.kept, torch.full_like(out, run.tau).maximum(out), out)
        return out

    @property
    def scores(self) -> torch.Tensor:
        """The largest τ at which each edge is kept, aligned with graph.edge_names (`roc_auc` input)."""
        return self.matrix[self.graph.edge_mask]

    @property
    def edges(self) -> list[str]:
        return self.graph.edge_names


def default_taus(gap: float, n: int = 12) -> list[float]:
    """n thresholds log-spaced from 1e-5 to 3 × |metric_clean − metric_corrupted|."""
    scale = abs(gap) or 1.0
    return (scale * torch.logspace(-5, math.log10(3), n, dtype=torch.float64)).tolist()


def acdc_sweep(model, pairs, metric="logit_diff", taus: list[float] | None = None, ablation: str = "resample",
               batch_size: int = 32, progress=None) -> AcdcSweep:
    """ACDC at each τ (default: `default_taus` of the clean−corrupted gap), sharing one evaluator."""
    ev = CircuitEvaluator(model, pairs, metric, ablation, batch_size, cache=True)
    ev.metrics([ev.graph.edge_mask])  # fills metric_clean / metric_corrupted and the cache
    taus = sorted(_check_tau(t) for t in taus) if taus is not None else default_taus(ev.metric_clean - ev.metric_corrupted)
    if not taus:
        raise ValueError("acdc_sweep needs at least one tau")
    runs = []
    for k, tau in enumerate(taus):
        step = (lambda f, k=k: progress((k + f) / len(taus))) if progress else None
        runs.append(acdc(model, pairs, metric, tau, ablation, batch_size, step, evaluator=ev))
    return AcdcSweep(ev.graph, taus, runs)
