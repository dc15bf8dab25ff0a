"""The web app on a Ray cluster (EDGEWISE_RAY_ADDRESS = auto | local | ray://host:port).

Runs (attribution and the faithfulness curve) and faithfulness requests are computed by the
cluster's model replicas (distributed.py) instead of this process's device: the pool hands actors
to runs shard by shard (an equal share each), so up to one run per actor computes at once, and
nothing holds a device lock here. Without the variable none of this is loaded.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from .device import DeviceBusy

log = logging.getLogger("edgewise.cluster")
INFO_TTL_S = 5.0  # /api/health's node and GPU counts are at most this old


class ClusterDevice:
    """server.device.Device's interface for a cluster: runs hold nothing (the pool shares the actors);
    interactive requests run on a few threads of their own, each waiting for its shards."""

    def __init__(self, name: str, pool, max_waiting: int = 16, threads: int = 4):
        self.name, self.pool, self.max_waiting = name, pool, max_waiting
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="edgewise-cluster-request")
        self._waiting = 0
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, what: str, short: bool = False, eta=None):
        yield

    @contextmanager
    def hold_if_free(self, what: str):
        yield self.pool.busy() < len(self.pool.slots)

    def submit(self, fn, what: str) -> Future:
        with self._lock:
            if self._waiting >= self.max_waiting:
                raise DeviceBusy(f"{self._waiting} requests already wait for the cluster; try again in a moment", 2)
            self._waiting += 1

        def run():
            try:
                return fn()
            finally:
                with self._lock:
                    self._waiting -= 1

        return self._executor.submit(run)

    @property
    def holder(self) -> str | None:
        return None

    @property
    def n_waiting(self) -> int:
        return self._waiting


class Cluster:
    """This server's connection to Ray: its pool of replicas, started in the background at startup."""

    def __init__(self, address: str, workers: int | None = None, max_waiting: int = 16):
        from .. import distributed

        self.address, self.d = address, distributed
        distributed.connect(address)  # fails at startup, with the address, if the cluster cannot be joined
        self.workers = workers or distributed.default_workers(address)
        self.pool = distributed.get_pool(address)
        self.device = ClusterDevice(f"ray {address}", self.pool, max_waiting)
        self._info: dict = {"address": address, "nodes": None, "gpus": None}
        self._info_at = 0.0
        self._refreshing = threading.Lock()
        threading.Thread(target=self._start, name="edgewise-cluster-start", daemon=True).start()

    def _start(self) -> None:
        try:
            for note in self.pool.ensure(self.workers):
                log.warning("ray: %s", note)
        except Exception as e:  # noqa: BLE001 - the first run starts them again, and says why it cannot
            log.error("ray: actors did not start: %s", e)
        self._refresh()

    def sharding(self) -> dict:
        """What a run passes to attribute / ShardedEvaluator."""
        return {"workers": self.workers, "ray_address": self.address}

    def model(self, run: dict):
        return self.d.ModelName(run["model"], run.get("dtype") or "float32")

    def evaluator(self, run: dict, pairs, batch_size: int, cache: bool, cache_bytes: int):
        return self.d.ShardedEvaluator(self.model(run), pairs, run["metric"], run.get("ablation") or "resample",
                                       batch_size, cache=cache, cache_bytes=cache_bytes, **self.sharding())

    def info(self) -> dict:
        """{"address", "nodes", "gpus", "actors", "busy"} at once: node counts refresh in the background."""
        if time.monotonic() - self._info_at > INFO_TTL_S and not self._refreshing.locked():
            threading.Thread(target=self._refresh, daemon=True).start()
        return {**self._info, "actors": len(self.pool.slots), "busy": self.pool.busy()}

    def _refresh(self) -> None:
        if not self._refreshing.acquire(blocking=False):
            return
        try:
            info = self.d.cluster_info(self.address)
            self._info = {"address": self.address, "nodes": info["nodes"], "gpus": info["gpus"]}
        except Exception as e:  # noqa: BLE001 - health shows the last known counts
            log.warning("ray: cluster state unavailable: %s", e)
        finally:
            self._info_at = time.monotonic()
            self._refreshing.release()
