"""One model replica: the Ray actor that distributed.py shards attribution and evaluation over.

An actor loads a model once by name (models.load_model: zoo, hub/cache, local directory) and keeps
it, with its prepared weights, its graph, the pairs it was sent and (for evaluation) its cached
clean/ablated activations, for later shards and later runs. It computes the engine's sums over the
batches it is given (attribution.score_sums, activations.source_mean_sums,
CircuitEvaluator.metric_sums); the driver adds the shards' sums.

Work runs one task at a time (Ray's default group of a threaded actor); `progress`, `cancel` and
`status` run in a "control" group of their own, so the driver can watch and stop a task while it
computes: a cancelled run's task raises ShardCancelled at its next unit of work. distributed.py
wraps the class with ray.remote; without Ray installed this module still imports.
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import torch

try:
    from ray import method as _ray_method
except ImportError:  # without the extra `edgewise[ray]` this class never runs as an actor
    def _ray_method(**options):
        return lambda f: f

CONTROL = "control"  # the concurrency group of progress / cancel / status (beside the one computing)
_control = _ray_method(concurrency_group=CONTROL)


class ShardCancelled(Exception):
    """The driver cancelled the run this task belongs to."""


@dataclass(frozen=True)
class ModelName:
    """A model an actor loads by name: a zoo name, a TransformerLens or hub name, or a local
    checkpoint directory (which must exist at that path on every node), in `dtype` (None: float32)
    on `device` (None: the actor's GPU when it has one, else $EDGEWISE_DEVICE or cpu)."""

    name: str
    dtype: str | None = None
    device: str | None = None

    @classmethod
    def of(cls, model, dtype=None, device=None) -> "ModelName":
        if isinstance(model, ModelName):
            return model
        if isinstance(model, str):
            name = str(dtype).removeprefix("torch.") if dtype is not None else None
            return cls(model, name, device)
        what = type(model).__name__
        raise TypeError(f"a model given as an object ({what}) cannot be shipped to Ray actors: each actor loads its "
                        "own replica by name. Pass the name it was loaded from (zoo name, hub name or local "
                        "checkpoint directory), e.g. ew.attribute('toy-ioi', pairs, workers=2)")


def _fetch(value):
    """An ObjectRef nested in a task's arguments (Ray resolves only top-level ones) → its value."""
    if type(value).__name__ == "ObjectRef":
        import ray

        return ray.get(value)
    return value


def _lru_put(cache: OrderedDict, key, value, size: int):
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > size:
        cache.popitem(last=False)
    return value


class Replica:
    """The actor's state and methods (see the module docstring)."""

    def __init__(self, model_slots: int = 2, evaluator_slots: int = 2):
        self.model_slots, self.evaluator_slots = model_slots, evaluator_slots
        self._models: OrderedDict = OrderedDict()      # ModelName -> (model, graph)
        self._pairs: OrderedDict = OrderedDict()       # dataset key -> PromptPairs
        self._evaluators: OrderedDict = OrderedDict()  # (ModelName, dataset key, metric, ablation, batch) -> evaluator
        self._progress: dict = {}                      # task id -> fraction done
        self._cancelled: OrderedDict = OrderedDict()   # run keys (the last 256)
        self._lock = threading.Lock()
        self._busy: str | None = None
        self.counts = {"tasks": 0, "cancelled": 0, "loads": 0}

    # ------------------------------------------------------------ control group
    @_control
    def status(self) -> dict:
        """pid, device, models held, what computes now, task counts, CPU seconds this process has used."""
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        return {"pid": os.getpid(), "gpu": gpu, "models": [m.name for m in self._models], "busy": self._busy,
                "cpu_s": time.process_time(), **self.counts}

    @_control
    def progress(self, task: str) -> float | None:
        return self._progress.get(task)

    @_control
    def cancel(self, run: str) -> None:
        with self._lock:
            _lru_put(self._cancelled, run, True, 256)

    # ------------------------------------------------------------ compute group
    def describe(self, spec: ModelName) -> dict:
        """Load the model (if not held yet); its graph config, name and whether it attends both ways."""
        from .attribution import method_checks

        model, graph = self._model(spec)
        return {"cfg": graph.cfg.to_dict(), "model_name": getattr(model.cfg, "model_name", "") or spec.name,
                "bidirectional": getattr(model.cfg, "attention_dir", "causal") != "causal",
                "dtype": str(model.cfg.dtype).removeprefix("torch."), "checks": method_checks(model)}

    def tokenize(self, spec: ModelName, records: list, max_pairs: int | None = None):
        """PromptPairs of `records`, tokenized and checked by this replica's model (PairsError names the row)."""
        from .data import PromptPairs

        return PromptPairs.from_records(self._model(spec)[0], records, max_pairs=max_pairs)

    def score_sums(self, spec: ModelName, data: tuple, chunks: list, task: str, opts: dict):
        """attribution.score_sums over `chunks` (lists of pair indices), on the CPU."""
        from .attribution import score_sums

        with self._task(task) as report:
            model, graph = self._model(spec)
            means = _fetch(opts.get("means"))
            sums = score_sums(model, self._dataset(data), chunks, opts["method"], opts["metric"], opts["ablation"],
                              opts["ig_steps"], means=None if means is None else means.to(model.cfg.device),
                              progress=report, graph=graph)
            return sums.cpu()

    def mean_sums(self, spec: ModelName, data: tuple, chunks: list, task: str):
        """activations.source_mean_sums over `chunks`: (Σ of each source's output [n_sources, d_model], positions)."""
        from .activations import edge_hooks_enabled, source_mean_sums

        with self._task(task) as report:
            model, graph = self._model(spec)
            pairs = self._dataset(data)
            total, count = None, 0
            with edge_hooks_enabled(model):
                for b, idx in enumerate(chunks):  # batch by batch, so a cancel lands between batches
                    t, c = source_mean_sums(model, graph, pairs, [idx], model.cfg.device)
                    total, count = (t if total is None else total + t), count + c
                    report((b + 1) / len(chunks))
            return total.cpu(), count

    def metric_sums(self, spec: ModelName, data: tuple, numbers: list[int], task: str, opts: dict) -> dict:
        """CircuitEvaluator.metric_sums over the batches `numbers` (indices into its chunks()), for each
        circuit in opts["circuits"] (anything evaluate.keep_mask takes) or each top-k circuit of
        opts["top_k"] = (scores, ks); plus "n_kept", the edges each circuit keeps."""
        from .evaluate import CircuitEvaluator, keep_mask, top_k_masks

        with self._task(task) as report:
            model, graph = self._model(spec)
            key = (spec, data[0], opts["metric"].name, opts["ablation"], opts["batch_size"], opts["cache_bytes"])
            ev = self._evaluators.get(key)
            if ev is None:
                means = _fetch(opts.get("means"))
                ev = CircuitEvaluator(model, self._dataset(data), opts["metric"], opts["ablation"], opts["batch_size"],
                                      cache=opts["cache_bytes"] > 0, cache_bytes=opts["cache_bytes"],
                                      means=None if means is None else means.to(model.cfg.device))
                _lru_put(self._evaluators, key, ev, self.evaluator_slots)
            self._evaluators.move_to_end(key)
            if opts.get("top_k") is not None:
                masks = top_k_masks(graph, *opts["top_k"])
            else:
                masks = [keep_mask(graph, c) for c in _fetch(opts["circuits"])]
            sums = ev.metric_sums(masks, numbers, progress=report)
            return {**sums, "n_kept": [int(m.sum()) for m in masks]}

    # ------------------------------------------------------------ helpers
    def _model(self, spec: ModelName):
        if spec in self._models:
            self._models.move_to_end(spec)
            return self._models[spec]
        from .graph import Graph
        from .models import load_model

        model = load_model(spec.name, device=spec.device, dtype=spec.dtype)
        self.counts["loads"] += 1
        # a replaced model's evaluators hold its activations: drop them with it
        _lru_put(self._models, spec, (model, Graph.from_model(model)), self.model_slots)
        for key in [k for k in self._evaluators if k[0] not in self._models]:
            del self._evaluators[key]
        return self._models[spec]

    def _dataset(self, data: tuple):
        """data = (key, [ObjectRef of PromptPairs]): fetched from the object store once per actor."""
        key, box = data
        if key not in self._pairs:
            import ray

            _lru_put(self._pairs, key, ray.get(box[0]), 4)
        self._pairs.move_to_end(key)
        return self._pairs[key]

    def _task(self, task: str):
        return _Task(self, task)


class _Task:
    """Context of one task: its progress callback (raises ShardCancelled once its run is cancelled)."""

    def __init__(self, replica: Replica, task: str):
        self.r, self.task, self.run = replica, task, task.split("/")[0]

    def __enter__(self):
        self.r._busy = self.task
        self.r.counts["tasks"] += 1
        self(0.0)  # a task queued behind its run's cancel never starts
        return self

    def __call__(self, fraction: float) -> None:
        if self.run in self.r._cancelled:
            self.r.counts["cancelled"] += 1
            raise ShardCancelled(f"task {self.task} cancelled")
        self.r._progress[self.task] = fraction

    def __exit__(self, *exc):
        self.r._progress.pop(self.task, None)
        self.r._busy = None
        return False
