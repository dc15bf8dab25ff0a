"""Attribution and circuit evaluation sharded over a Ray cluster (the optional extra `edgewise[ray]`).

    ew.attribute("toy-ioi", pairs, workers=4)                 # the Ray this process joined, else a local one
    ew.attribute("gpt2", pairs, ray_address="auto")           # the cluster `ray start --head` runs here
    ew.evaluate("gpt2", pairs, circuit, workers=2, ray_address="ray://head:10001")
    ew.faithfulness_curve(ModelName("/ckpts/llama", "bfloat16"), pairs, res.scores, workers=8)

Scores and metrics are sums over prompt pairs (attribution.score_sums, CircuitEvaluator.metric_sums,
activations.source_mean_sums), so a dataset splits by pairs: the driver cuts the length-sorted
batches the in-process run makes (PromptPairs._chunks) into shards of whole batches, actors sum
their shards, the driver adds the sums in shard order and divides once; the in-process result up
to float rounding. Mean ablation: a first pass sums each source's outputs, the means go once into
Ray's object store and every shard of the second pass reads them.

Actors (replica.py) are one per GPU (`num_gpus=1`) when the cluster has GPUs, else CPU actors
(`cpus_per_worker` cores each); each loads the model by name and keeps it for later shards and runs,
so a model object cannot be shipped: give its name (ModelName for a dtype or device). Ray restarts
an actor whose process dies; its shard is retried once (shards.py).
"""
from __future__ import annotations

import warnings

import os
import threading

import torch

from .attribution import AttributionResult, _check, apply_checks
from .evaluate import Faithfulness, curve_ks
from .graph import Graph
from .metrics import get_metric, warn_if_vanishing
from .replica import CONTROL, ModelName, Replica
from .shards import Pool, plan, run_shards

__all__ = ["ModelName", "ShardedEvaluator", "attribute", "cluster_info", "connect", "evaluate",
           "faithfulness_curve", "get_pool", "tokenize"]
DEFAULT_CPU_WORKERS = 2  # CPU actors started when `workers` is not given (each holds a model replica)
_POOLS: dict[tuple, Pool] = {}
_DESCRIBED: dict[ModelName, dict] = {}
_LOCK = threading.Lock()


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError("sharding over Ray needs the optional extra: pip install 'edgewise[ray]'") from None
    return ray


def connect(address: str | None = None):
    """Join Ray once per process: `local` starts a cluster on this machine (listening on loopback only),
    `auto` joins the one `ray start --head` runs here, `ray://host:port` a remote one, None whichever
    RAY_ADDRESS names, else a local one. A process already joined stays with its cluster."""
    if address is None and not os.environ.get("RAY_ADDRESS"):
        address = "local"  # not a cluster some earlier `ray start` left in /tmp/ray
    ray = _ray()
    with _LOCK:
        if not ray.is_initialized():
            kw = {}
            if address == "local":
                kw = dict(include_dashboard=False, log_to_driver=False, logging_level="warning")
                _loopback_only()
            try:
                ray.init(address=address, **kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise RuntimeError(f"cannot join the Ray cluster at {address or 'RAY_ADDRESS'}: {e}") from None
    return ray


def _loopback_only() -> None:
    """A one-machine cluster listens on 127.0.0.1: Ray otherwise binds its processes to the machine's
    outward address. Ray reads the switch when imported (done by now: replica.py imports it), and its
    processes read it from the environment, so both are set (unless the user set it)."""
    if "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" in os.environ:
        return
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:  # a private module (Ray 2.60): if a later Ray moves it, its child processes still read the env
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    except ImportError:
        pass


def actor_shape(resources: dict, cpus_per_worker: float = 1.0) -> tuple[tuple, dict, int]:
    """(pool key, ray.remote resources of one actor, how many fit) for a cluster's resources:
    one actor per GPU when it has GPUs, else CPU actors of `cpus_per_worker` cores."""
    gpus = int(resources.get("GPU", 0))
    if gpus >= 1:
        return ("gpu", 1), dict(num_gpus=1, num_cpus=1), gpus
    return ("cpu", cpus_per_worker), dict(num_cpus=cpus_per_worker), int(resources.get("CPU", 0) / cpus_per_worker)


def get_pool(address: str | None = None, cpus_per_worker: float = 1.0) -> Pool:
    """The pool of model replicas of this cluster (GPU actors when it has GPUs), shared by this process."""
    ray = connect(address)
    key, shape, _ = actor_shape(ray.cluster_resources(), cpus_per_worker)
    with _LOCK:
        if key not in _POOLS:
            actor = ray.remote(concurrency_groups={CONTROL: 2}, max_restarts=-1, max_task_retries=0,
                               **shape)(Replica)
            _POOLS[key] = Pool(ray, actor.remote, lambda: actor_shape(ray.cluster_resources(), cpus_per_worker)[2])
        return _POOLS[key]


def default_workers(address: str | None = None) -> int:
    """One worker per GPU of the cluster; DEFAULT_CPU_WORKERS without GPUs."""
    gpus = int(connect(address).cluster_resources().get("GPU", 0))
    return gpus or DEFAULT_CPU_WORKERS


def cluster_info(address: str | None = None) -> dict:
    """{"address", "nodes", "gpus", "actors", "busy"} of the cluster and this process's pools."""
    ray = connect(address)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    pools = list(_POOLS.values())
    return {"address": address or "local", "nodes": len(nodes),
            "gpus": int(sum(n.get("Resources", {}).get("GPU", 0) for n in nodes)),
            "actors": sum(len(p.slots) for p in pools), "busy": sum(p.busy() for p in pools)}


class _Replicas:
    """The pool as one sharded computation sees it: the model by name, the pairs in the object store
    (boxed, so each actor fetches them once, not per task), how many workers it may hold."""

    def __init__(self, model, workers=None, ray_address=None, dtype=None, device=None, cpus_per_worker=1.0):
        self.spec = ModelName.of(model, dtype, device)
        self.ray = connect(ray_address)
        self.pool = get_pool(ray_address, cpus_per_worker)
        self.workers = workers or default_workers(ray_address)
        self.notes = self.pool.ensure(self.workers)
        self.pairs = self.data = None

    def load(self, pairs) -> dict:
        """Put the pairs in the object store; the model's graph config, name, dtype and attention
        direction, from one actor (cached per model in this process)."""
        self.pairs, self.data = pairs, (pairs.sha256(), [self.ray.put(pairs)])
        if self.spec not in _DESCRIBED:
            (_DESCRIBED[self.spec],) = self.call("describe", f"loading {self.spec.name}")
        self.info = _DESCRIBED[self.spec]
        return self.info

    def call(self, method: str, what: str, *args):
        """actor.method(spec, *args) on one actor (a one-shard pass: retried if that actor dies)."""
        return run_shards(self.pool, plan([None], [1], 1),
                          lambda a, s, t: getattr(a, method).remote(self.spec, *args), 1, None, what)

    def batches(self, batch_size: int) -> list[list[int]]:
        return self.pairs._chunks(batch_size, self.info["bidirectional"])

    def run(self, batches: list, work: list, submit, what: str, progress=None, start=0.0, end=1.0) -> list:
        """run_shards over shards of `work` (one item per batch), progress mapped into [start, end]."""
        shards = plan(work, [len(b) for b in batches], self.workers)
        report = (lambda f: progress(start + (end - start) * f)) if progress else None
        return run_shards(self.pool, shards, submit, self.workers, report, what)

    def means(self, batches: list, progress, start: float, end: float) -> torch.Tensor:
        """Each source's mean output over the corrupted prompts (first pass), as the model's dtype."""
        parts = self.run(batches, batches, lambda a, s, t: a.mean_sums.remote(self.spec, self.data, s.work, t),
                         "mean ablation: source means", progress, start, end)
        total, count = parts[0][0].clone(), parts[0][1]
        for t, c in parts[1:]:
            total += t
            count += c
        return (total / count).to(getattr(torch, self.info["dtype"]))


def tokenize(model, records: list, ray_address: str | None = None, dtype=None, max_pairs: int | None = None):
    """PromptPairs of records, tokenized and checked by one actor's replica (the driver never loads
    the model; PairsError names the row and field)."""
    (pairs,) = _Replicas(model, 1, ray_address, dtype).call("tokenize", "tokenizing", records, max_pairs)
    return pairs


def attribute(model, pairs, method: str = "eap", metric="logit_diff", batch_size: int = 32,
              ablation: str = "resample", ig_steps: int = 5, progress=None, workers: int | None = None,
              ray_address: str | None = None, dtype=None, device=None, cpus_per_worker: float = 1.0):
    """attribution.attribute on Ray actors: the same scores (measured: float64 to 2.6e-16 relative, float32 to 3.2e-8).
    `model` is a name or a ModelName; progress(fraction) may raise to cancel the run on every actor."""
    _check(method, ablation)
    m = get_metric(metric)
    c = _Replicas(model, workers, ray_address, dtype, device, cpus_per_worker)
    c.load(pairs)
    checked = apply_checks(c.info["checks"], method, ablation)  # as the actors' model decides
    for note in checked:
        warnings.warn(note, stacklevel=2)
    notes = [w for w in [warn_if_vanishing(m, method)] + checked if w] + list(getattr(pairs, "warnings", []))
    batches = c.batches(batch_size)
    opts = {"method": method, "metric": m, "ablation": ablation, "ig_steps": ig_steps, "means": None}
    split = 0.0
    if ablation == "mean":
        split = 0.25  # one forward per batch, against ~3 for scoring
        opts["means"] = c.ray.put(c.means(batches, progress, 0.0, split))
    sums = c.run(batches, batches, lambda a, s, t: a.score_sums.remote(c.spec, c.data, s.work, t, opts),
                 f"{method} attribution", progress, split, 1.0)
    total = sums[0].clone()
    for s in sums[1:]:  # in shard order: the same sum whichever actor finished first
        total += s
    graph = Graph.from_model(c.info["cfg"])
    return AttributionResult(graph, total / len(pairs), method, m.name, ablation, len(pairs), c.data[0],
                             c.info["model_name"], notes + c.notes)


class ShardedEvaluator:
    """CircuitEvaluator's interface (metrics, faithfulness; metric_clean / metric_corrupted) computed on
    Ray actors. Each actor keeps its batches' clean and ablated activations (within `cache_bytes`,
    0: none), so later circuits cost one patched forward per batch there."""

    def __init__(self, model, pairs, metric="logit_diff", ablation="resample", batch_size: int = 32,
                 cache: bool = True, cache_bytes: int = 1 << 30, workers: int | None = None,
                 ray_address: str | None = None, dtype=None, device=None, cpus_per_worker: float = 1.0):
        self.c = _Replicas(model, workers, ray_address, dtype, device, cpus_per_worker)
        self.c.load(pairs)
        self.pairs, self.batch_size, self.cache = pairs, batch_size, cache
        self.metric, self.ablation = get_metric(metric), ablation
        self.cache_bytes = cache_bytes if cache else 0
        self.graph = Graph.from_model(self.c.info["cfg"])
        self.means_ref = None
        self.metric_clean = self.metric_corrupted = None

    def sums(self, circuits=None, top_k=None, progress=None) -> dict:
        """Σ over every pair of the clean, fully ablated and each circuit's metric (float64), "count", "n_kept"."""
        c = self.c
        batches = c.batches(self.batch_size)
        start = 0.0
        if self.ablation == "mean" and self.means_ref is None:
            start = 0.2
            self.means_ref = c.ray.put(c.means(batches, progress, 0.0, start))
        opts = {"metric": self.metric, "ablation": self.ablation, "batch_size": self.batch_size,
                "cache_bytes": self.cache_bytes, "means": self.means_ref,
                "circuits": circuits, "top_k": top_k}
        if top_k is None:
            opts["circuits"] = c.ray.put(circuits)  # once, however many shards read it
        parts = c.run(batches, list(range(len(batches))),
                      lambda a, s, t: a.metric_sums.remote(c.spec, c.data, s.work, t, opts), "circuit evaluation",
                      progress, start, 1.0)
        out = {"clean": 0.0, "corrupted": 0.0, "circuits": [0.0] * len(parts[0]["circuits"]), "count": 0,
               "n_kept": parts[0]["n_kept"]}
        for p in parts:  # in shard order
            for k in ("clean", "corrupted", "count"):
                out[k] += p[k]
            out["circuits"] = [a + b for a, b in zip(out["circuits"], p["circuits"])]
        self.metric_clean, self.metric_corrupted = out["clean"] / out["count"], out["corrupted"] / out["count"]
        return out

    def metrics(self, masks, progress=None) -> list[float]:
        """Mean metric over pairs with each kept-edge mask; sets metric_clean and metric_corrupted."""
        s = self.sums(circuits=list(masks), progress=progress)
        return [v / s["count"] for v in s["circuits"]]

    def faithfulness(self, circuit, progress=None) -> Faithfulness:
        s = self.sums(circuits=[circuit], progress=progress)
        return Faithfulness(self.metric_clean, self.metric_corrupted, s["circuits"][0] / s["count"], s["n_kept"][0])


def evaluate(model, pairs, circuit, metric="logit_diff", ablation="resample", batch_size: int = 32, progress=None,
             workers: int | None = None, ray_address: str | None = None, **kw) -> Faithfulness:
    """evaluate.evaluate on Ray actors."""
    ev = ShardedEvaluator(model, pairs, metric, ablation, batch_size, cache=False, workers=workers,
                          ray_address=ray_address, **kw)
    return ev.faithfulness(circuit, progress)


def faithfulness_curve(model, pairs, scores: torch.Tensor, metric="logit_diff", ablation="resample",
                       ks: list[int] | None = None, batch_size: int = 32, progress=None, workers: int | None = None,
                       ray_address: str | None = None, **kw) -> list[dict]:
    """evaluate.faithfulness_curve on Ray actors: every top-k circuit in one pass over the pairs."""
    scores = scores.detach().cpu()
    ks = ks or curve_ks(len(scores))
    ev = ShardedEvaluator(model, pairs, metric, ablation, batch_size, cache=False, workers=workers,
                          ray_address=ray_address, **kw)
    s = ev.sums(top_k=(scores, ks), progress=progress)
    n = ev.graph.n_edges
    return [{"k": k, "fraction": k / n, **Faithfulness(ev.metric_clean, ev.metric_corrupted, v / s["count"], k).to_dict()}
            for k, v in zip(ks, s["circuits"])]
