"""The web app's bridge to the engine: cached models, the run job, cached circuit evaluators.

A run job has two phases. Attribution holds the device once, start to end; its scores are stored and
published (`scored`) at once, so the graph can be drawn. Then the faithfulness curve is computed one
point at a time, and then MIB's CPR/CMD circuits, each a short hold of the device, so interactive
requests (faithfulness, per-pair metrics) are served between points rather than after the curve.
"""
from __future__ import annotations

import hashlib
import inspect
import math
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from typing import Callable

import torch

from ..attribution import attribute
from ..circuit import Circuit
from ..evaluate import MIB_FRACTIONS, CircuitEvaluator, Faithfulness, curve_ks
from ..graph import Graph
from ..mib import mib_masks, mib_result
from .config import Catalog, Settings
from .device import Device
from .store import Store

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Unavailable(RuntimeError):
    """A request that needs a model and dataset this run does not have (e.g. an imported circuit)."""


class LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = max(1, size)

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return value

    def hit(self, key):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None


def call_loader(load: Callable, name: str, device: str, dtype: torch.dtype | None, progress) -> object:
    """catalog.load_model(name, device, dtype=, progress=), passing only what the loader accepts."""
    params = inspect.signature(load).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    kw = {k: v for k, v in (("dtype", dtype), ("progress", progress))
          if v is not None and (takes_all or k in params)}
    return load(name, device, **kw)


class ModelCache:
    """Loaded models by (name, dtype), least recently used evicted; loading one key happens once."""

    def __init__(self, catalog: Catalog, device: str, size: int):
        self.catalog, self.device = catalog, device
        self._models = LRU(size)
        self._lock = threading.Lock()
        self.loads = 0  # how many times a model was actually loaded (tests check caching)

    def get(self, name: str, dtype: str = "float32", progress=None):
        with self._lock:
            model = self._models.hit((name, dtype))
            if model is None:
                model = call_loader(self.catalog.load_model, name, self.device, DTYPES[dtype], progress)
                self._models.put((name, dtype), model)
                self.loads += 1
            return model

    def cached(self, name: str, dtype: str = "float32") -> bool:
        with self._lock:
            return (name, dtype) in self._models


def stage_weights(method: str, n_edges: int, ig_steps: int, n_source_hooks: int, n_ks: int) -> float:
    """Share of a run's time spent attributing (the rest is the faithfulness curve and MIB's points, n_ks
    circuits in all), from forward-pass counts per batch: a backward pass costs about two forwards; the
    first circuit also runs the clean and ablated passes."""
    attribution = {"eap": 3, "clean-corrupted": 7, "eap-ig-inputs": 2 + 3 * ig_steps,
                   "eap-ig-activations": 2 + 3 * ig_steps * n_source_hooks, "exact": 2 + n_edges}.get(method, 3)
    return attribution / (attribution + 2 + n_ks)


def cache_bytes(model, pairs, batch_size: int) -> int:
    """What a caching CircuitEvaluator keeps: per batch the ablated sources [n_sources, B, P, d_model]
    and the clean logits [B, P, d_vocab], P the batch's longest prompt (pairs are batched by length)."""
    cfg = model.cfg
    n_sources = Graph.from_model(model).n_sources
    lengths = sorted(len(c) for c in pairs.clean)
    padded = sum(lengths[min(i + batch_size, len(lengths)) - 1] * (min(i + batch_size, len(lengths)) - i)
                 for i in range(0, len(lengths), batch_size))
    itemsize = torch.empty(0, dtype=cfg.dtype).element_size()
    return padded * (n_sources * cfg.d_model + cfg.d_vocab) * itemsize


class Engine:
    def __init__(self, settings: Settings, store: Store, catalog: Catalog):
        self.settings, self.store = settings, store
        self.device = settings.resolved_device()
        self.models = ModelCache(catalog, self.device, settings.model_cache_size)
        self.cluster = None  # with EDGEWISE_RAY_ADDRESS: runs and faithfulness requests compute on Ray (cluster.py)
        if settings.ray_address:
            from .cluster import Cluster

            self.cluster = Cluster(settings.ray_address, settings.ray_workers, settings.max_waiting)
        self.gpu = self.cluster.device if self.cluster else Device(self.device, max_waiting=settings.max_waiting)
        self._evaluators = LRU(settings.evaluator_cache_size)
        self._per_pair = LRU(32)  # (run id, kept-edge mask digest) -> per-pair metrics
        self._eval_lock = threading.Lock()

    # ------------------------------------------------------------ the run job
    def execute(self, run: dict, job) -> None:
        """Load the model, attribute (then `job.scored`), compute the curve point by point (`job.curve_point`).
        `job.report(fraction, stage, detail=None)` records progress and raises once the run is cancelled."""
        job.report(0.0, "loading model")
        loading = not self.models.cached(run["model"], run["dtype"] or "float32")
        model = self.models.get(run["model"], run["dtype"] or "float32",
                                progress=(lambda f, detail=None: job.report(0.0, "loading model", detail))
                                if loading else None)
        pairs = self.store.load_pairs(run["dataset_id"], with_warnings=False)  # the upload showed them
        graph = Graph.from_model(model)
        ks = self.curve_ks(graph.n_edges)
        w = stage_weights(run["method"], graph.n_edges, run["ig_steps"] or 1, len(graph.source_hooks()),
                          len(ks) + 2 * len(MIB_FRACTIONS))
        t0 = time.monotonic()
        done = [0.0]

        def attribution_progress(f: float) -> None:
            done[0] = f
            job.report(w * f, "attribution")

        def eta() -> float | None:  # seconds of attribution left, from its pace so far
            f = done[0]
            return (time.monotonic() - t0) * (1 - f) / f if f > 0.02 else None

        with self.gpu.hold(f"the attribution of run {run['id']}", eta=eta):
            res = attribute(self.cluster.model(run) if self.cluster else model, pairs, method=run["method"],
                            metric=run["metric"], batch_size=run["batch_size"], ablation=run["ablation"],
                            ig_steps=run["ig_steps"] or 1, progress=attribution_progress,
                            **(self.cluster.sharding() if self.cluster else {}))
        job.report(w, "saving")
        job.scored(res.graph.cfg.to_dict(), res.scores.detach().double().cpu().numpy(), res.warnings, len(ks))

        scores = res.scores.detach().cpu()
        ev = self.evaluator({**run, "cfg": res.graph.cfg.to_dict()})
        curve_masks = [Circuit.from_scores(graph, scores, top_k=k).in_graph for k in ks]
        mib = mib_masks(graph, scores)
        n_masks = len(ks) + len(mib)

        def on_curve(start: int, values: list[float]) -> None:
            for j, value in enumerate(values):
                f = Faithfulness(ev.metric_clean, ev.metric_corrupted, value, ks[start + j])
                job.curve_point(curve_point(f, ks[start + j], graph.n_edges), start + j, len(ks))

        self._in_holds(ev, curve_masks, f"faithfulness-curve points of run {run['id']}", on_curve,
                       lambda f: job.report(w + (1 - w) * f * len(ks) / n_masks, "faithfulness curve"))
        # MIB's 20 pruned circuits (CPR, CMD), in the same short holds as the curve's points
        values: list[float] = []
        self._in_holds(ev, mib, f"MIB points of run {run['id']}", lambda start, v: values.extend(v),
                       lambda f: job.report(w + (1 - w) * (len(ks) + f * len(mib)) / n_masks, "mib"))
        job.mib(finite(mib_result(graph, mib, values, ev.metric_clean, ev.metric_corrupted)))

    def _in_holds(self, ev: CircuitEvaluator, masks: list, what: str, on_values, progress) -> None:
        """Evaluate masks in short holds of the device, so interactive requests are served in between.
        Cached activations: one distinct mask per hold (one patched pass per batch; equal masks, e.g.
        MIB's smallest fractions of a small graph, run once). Uncached, every data pass re-runs the clean
        and ablated models, so masks go in 4 groups, one pass each: 2·4 + n passes per batch instead
        of 3n (n = 24: 1.23× the cached cost rather than 2.8×).
        on_values(start, values) receives the mean metrics of masks[start:…] in order; progress(f)."""
        keys = [mask_key(m) for m in masks]
        seen: dict[str, float] = {}
        group = 1 if ev.cache else math.ceil(len(masks) / 4)
        start = 0
        while start < len(masks):
            todo: dict[str, torch.Tensor] = {}  # the masks not evaluated yet in masks[start:end], at most `group`
            end = start
            while end < len(masks):
                new = keys[end] not in seen and keys[end] not in todo
                if new and len(todo) == group:
                    break
                if new:
                    todo[keys[end]] = masks[end]
                end += 1
            if todo:
                with self.gpu.hold(f"{what}: {start + 1}–{end} of {len(masks)}", short=True):
                    values = ev.metrics(list(todo.values()),
                                        progress=lambda f: progress((start + f * (end - start)) / len(masks)))
                seen.update(zip(todo, values))
            on_values(start, [seen[key] for key in keys[start:end]])
            start = end

    def curve_ks(self, n_edges: int) -> list[int]:
        """The curve's circuit sizes: log-spaced k plus MIB's fractions of the edges."""
        return curve_ks(n_edges, self.settings.curve_points)

    # ------------------------------------------------------------ faithfulness of a kept edge set
    def evaluator(self, run: dict) -> CircuitEvaluator:
        """The run's cached CircuitEvaluator. It keeps the clean and ablated activations when they fit
        EDGEWISE_ACTIVATION_CACHE_MB (then each circuit costs one patched pass per batch), else
        recomputes them per circuit (three passes per batch, memory flat in the number of pairs)."""
        if not run.get("model") or not run.get("dataset_id") or not run.get("metric"):
            raise Unavailable(f"run {run['id']} ({run['method']}) has no model, dataset and metric to evaluate "
                              "circuits with; import the circuit with ?model=…&dataset_id=… to enable faithfulness")
        with self._eval_lock:
            ev = self._evaluators.hit(run["id"])
            if ev is not None:
                return ev
            try:
                model = self.models.get(run["model"], run.get("dtype") or "float32")
            except (ValueError, RuntimeError, OSError) as e:
                raise Unavailable(f"model {run['model']!r} of run {run['id']} cannot be loaded here: {e}") from None
            cfg = run.get("cfg") or {}
            g = Graph.from_model(model)
            if cfg and (cfg["n_layers"], cfg["n_heads"]) != (g.cfg.n_layers, g.cfg.n_heads):
                raise Unavailable(f"run {run['id']} has a {cfg['n_layers']}-layer {cfg['n_heads']}-head graph; "
                                  f"model {run['model']!r} has {g.cfg.n_layers} layers, {g.cfg.n_heads} heads")
            try:
                pairs = self.store.load_pairs(run["dataset_id"], with_warnings=False)
            except KeyError:
                raise Unavailable(f"the dataset of run {run['id']} was deleted; its scores remain, but circuits "
                                  "can no longer be evaluated") from None
            batch_size = run.get("batch_size") or 16
            cache = cache_bytes(model, pairs, batch_size) <= self.settings.activation_cache_mb * 2**20
            if self.cluster:  # each actor keeps its own batches' activations
                return self._evaluators.put(run["id"], self.cluster.evaluator(
                    run, pairs, batch_size, cache, int(self.settings.activation_cache_mb * 2**20)))
            return self._evaluators.put(run["id"], CircuitEvaluator(
                model, pairs, run["metric"], run.get("ablation") or "resample", batch_size, cache=cache))

    def cached_evaluator(self, run_id: str) -> CircuitEvaluator | None:
        with self._eval_lock:
            return self._evaluators.get(run_id)

    def forget(self, run_ids) -> None:
        """Drop cached evaluators and per-pair metrics (a run or its dataset was deleted)."""
        run_ids = set(run_ids)
        with self._eval_lock:
            for run_id in run_ids:
                self._evaluators.pop(run_id, None)
            for key in [k for k in self._per_pair if k[0] in run_ids]:
                self._per_pair.pop(key)

    def submit_per_pair(self, run: dict, keep: torch.Tensor) -> Future:
        """A Future of {"clean", "corrupted", "circuit"}: the metric of every pair (lists in pair order)
        with kept-edge mask `keep` (CircuitEvaluator.per_pair: one patched pass per batch), cached per
        (run, mask). Computed on the device between units of run jobs, as faithfulness requests are."""
        key = (run["id"], mask_key(keep))
        with self._eval_lock:
            hit = self._per_pair.hit(key)
        if hit is not None:
            done: Future = Future()
            done.set_result(hit)
            return done

        def compute() -> dict:
            out = {k: v.tolist() for k, v in self.evaluator(run).per_pair(keep).items()}
            with self._eval_lock:
                return self._per_pair.put(key, out)

        return self.gpu.submit(compute, f"per-pair metrics on run {run['id']}")

    def tokenizer(self, run: dict):
        """The run's model's tokenizer (None for models without one, e.g. tracr's)."""
        return getattr(self.models.get(run["model"], run.get("dtype") or "float32"), "tokenizer", None)

    def submit_faithfulness(self, run: dict, keep: torch.Tensor):
        """A Future of the faithfulness dict of kept-edge mask [n_sources, n_inputs], computed on the
        device between units of run jobs. DeviceBusy (at once) when the device cannot take it."""
        def compute() -> dict:
            t0 = time.perf_counter()
            out = self.evaluator(run).faithfulness(keep).to_dict()
            return {**out, "seconds": time.perf_counter() - t0}

        return self.gpu.submit(compute, f"a faithfulness request on run {run['id']}")

    def faithfulness_if_free(self, run: dict, keep: torch.Tensor) -> dict | None:
        """The faithfulness, only if the run's activations are cached and the device is free now."""
        ev = self.cached_evaluator(run["id"])
        if ev is None:
            return None
        with self.gpu.hold_if_free(f"a circuit download of run {run['id']}") as taken:
            return ev.faithfulness(keep).to_dict() if taken else None


def mask_key(mask: torch.Tensor) -> str:
    """A digest of a kept-edge mask: equal exactly when the masks are (up to a 128-bit collision)."""
    return hashlib.blake2b(mask.numpy().tobytes(), digest_size=16).hexdigest()


def curve_point(f: Faithfulness, k: int, n_edges: int) -> dict:
    return {"k": k, "fraction": k / n_edges if n_edges else 0.0, **finite(f.to_dict())}


def finite(x):
    """x with every non-finite float (NaN: clean = corrupted) as None, so that it is JSON."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x
