"""The web app's bridge to the engine: cached models, the run job, cached circuit evaluators.

Every pass through a model holds `device_lock`: TransformerLens hooks and hook flags live on the
model object, so two threads must never drive it at once (and a device runs one model's passes).
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import torch

from ..attribution import attribute
from ..evaluate import CircuitEvaluator, faithfulness_curve, log_spaced_ks
from ..graph import Graph
from .config import Catalog, Settings
from .store import Store


class Busy(RuntimeError):
    """The device is held by a run for longer than the caller wants to wait."""


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


class ModelCache:
    """Loaded models by name, least recently used evicted; loading one name happens once."""

    def __init__(self, catalog: Catalog, device: str, size: int):
        self.catalog, self.device = catalog, device
        self._models = LRU(size)
        self._lock = threading.Lock()
        self.loads = 0  # how many times a model was actually loaded (tests check caching)

    def get(self, name: str):
        with self._lock:
            model = self._models.hit(name)
            if model is None:
                model = self._models.put(name, self.catalog.load_model(name, self.device))
                self.loads += 1
            return model


def stage_weights(method: str, n_edges: int, ig_steps: int, n_source_hooks: int, n_ks: int) -> float:
    """Share of a run's time spent attributing (the rest is the faithfulness curve), from forward-pass
    counts per batch: a backward pass costs about two forwards."""
    attribution = {"eap": 3, "clean-corrupted": 7, "eap-ig-inputs": 2 + 3 * ig_steps,
                   "eap-ig-activations": 2 + 3 * ig_steps * n_source_hooks, "exact": 2 + n_edges}.get(method, 3)
    return attribution / (attribution + 3 + n_ks)


class Engine:
    def __init__(self, settings: Settings, store: Store, catalog: Catalog):
        self.settings, self.store = settings, store
        self.device = settings.resolved_device()
        self.models = ModelCache(catalog, self.device, settings.model_cache_size)
        self.device_lock = threading.Lock()
        self._evaluators = LRU(settings.evaluator_cache_size)
        self._eval_lock = threading.Lock()

    # ------------------------------------------------------------ the run job
    def execute(self, run: dict, report) -> None:
        """Load the model, attribute with progress, compute the faithfulness curve, store both."""
        report(0.0, "loading model")
        model = self.models.get(run["model"])
        pairs = self.store.load_pairs(run["dataset_id"])
        graph = Graph.from_model(model)
        ks = log_spaced_ks(graph.n_edges, self.settings.curve_points)
        w = stage_weights(run["method"], graph.n_edges, run["ig_steps"], len(graph.source_hooks()), len(ks))
        with self.device_lock:
            res = attribute(model, pairs, method=run["method"], metric=run["metric"], batch_size=run["batch_size"],
                            ablation=run["ablation"], ig_steps=run["ig_steps"],
                            progress=lambda f: report(w * f, "attribution"))
            scores = res.scores.detach().double().cpu()
            curve = faithfulness_curve(model, pairs, scores, metric=run["metric"], ablation=run["ablation"], ks=ks,
                                       batch_size=run["batch_size"],
                                       progress=lambda f: report(w + (1 - w) * f, "faithfulness curve"))
        report(1.0, "saving")
        self.store.save_result(run["id"], cfg=res.graph.cfg.to_dict(), scores=scores.numpy(), curve=curve,
                               warnings=res.warnings)

    # ------------------------------------------------------------ faithfulness of a kept edge set
    def evaluator(self, run: dict) -> CircuitEvaluator:
        """The cached CircuitEvaluator of a run (its clean and ablated activations are kept)."""
        if not run.get("model") or not run.get("dataset_id") or not run.get("metric"):
            raise Unavailable(f"run {run['id']} ({run['method']}) has no model, dataset and metric to evaluate "
                              "circuits with; import the circuit with ?model=…&dataset_id=… to enable faithfulness")
        with self._eval_lock:
            ev = self._evaluators.hit(run["id"])
            if ev is None:
                try:
                    model = self.models.get(run["model"])
                except (ValueError, RuntimeError, OSError) as e:
                    raise Unavailable(f"model {run['model']!r} of run {run['id']} cannot be loaded here: {e}") from None
                cfg = run.get("cfg") or {}
                g = Graph.from_model(model)
                if cfg and (cfg["n_layers"], cfg["n_heads"]) != (g.cfg.n_layers, g.cfg.n_heads):
                    raise Unavailable(f"run {run['id']} has a {cfg['n_layers']}-layer {cfg['n_heads']}-head graph; "
                                      f"model {run['model']!r} has {g.cfg.n_layers} layers, {g.cfg.n_heads} heads")
                pairs = self.store.load_pairs(run["dataset_id"])
                ev = self._evaluators.put(run["id"], CircuitEvaluator(
                    model, pairs, run["metric"], run.get("ablation") or "resample", run.get("batch_size") or 16,
                    cache=True))
            return ev

    def cached_evaluator(self, run_id: str) -> CircuitEvaluator | None:
        with self._eval_lock:
            return self._evaluators.get(run_id)

    def faithfulness(self, run: dict, keep: torch.Tensor, timeout: float | None = None) -> dict:
        """Faithfulness of the kept-edge mask [n_sources, n_inputs]; Busy if the device stays held."""
        ev = self.evaluator(run)
        timeout = self.settings.busy_timeout_s if timeout is None else timeout
        if not self.device_lock.acquire(timeout=timeout):
            raise Busy(f"the device is busy with another run; try again in a moment (waited {timeout:g} s)")
        try:
            return ev.faithfulness(keep).to_dict()
        finally:
            self.device_lock.release()

