"""The job queue: one worker thread runs one job at a time (a device holds one model's passes),
publishes progress to subscribers, and cancels a running job by raising from its progress callback.

Events (what /api/runs/{id}/events streams): ("progress", {id, status, progress, stage}) while a run
works, then one of ("done" | "failed" | "cancelled", run) at its end.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import traceback
from typing import Callable

from .store import INTERRUPTED, Store

log = logging.getLogger("edgewise.jobs")


class Cancelled(Exception):
    """Raised inside a job (from its progress callback) when the run was cancelled."""


class EventHub:
    """Fan-out of run events from the worker thread to asyncio subscribers (one queue each)."""

    def __init__(self):
        self._subs: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]]] = {}
        self._lock = threading.Lock()

    def subscribe(self, run_id: str) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue()
        with self._lock:
            self._subs.setdefault(run_id, []).append((asyncio.get_running_loop(), q))
        return q

    def unsubscribe(self, run_id: str, q: asyncio.Queue) -> None:
        with self._lock:
            subs = [s for s in self._subs.get(run_id, []) if s[1] is not q]
            if subs:
                self._subs[run_id] = subs
            else:
                self._subs.pop(run_id, None)

    def publish(self, run_id: str, event: str, data: dict) -> None:
        with self._lock:
            subs = list(self._subs.get(run_id, []))
        for loop, q in subs:
            try:
                loop.call_soon_threadsafe(q.put_nowait, (event, data))
            except RuntimeError:  # that subscriber's loop has closed
                self.unsubscribe(run_id, q)


class JobQueue:
    """Runs `execute(run, report)` for queued run ids in a worker thread.

    report(fraction, stage) records progress (throttled) and raises `Cancelled` once the run is cancelled.
    """

    def __init__(self, store: Store, hub: EventHub, execute: Callable[[dict, Callable], None],
                 min_interval_s: float = 0.1):
        self.store, self.hub, self.execute = store, hub, execute
        self.min_interval_s = min_interval_s
        self._queue: queue.Queue = queue.Queue()
        self._cancel: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.current: str | None = None

    # ------------------------------------------------------------ control
    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._work, name="edgewise-worker", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel the running job, stop the worker; queued runs stay queued (marked interrupted at next start)."""
        self._stopping.set()
        if self.current:
            self._cancel.add(self.current)
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, run_id: str) -> None:
        self.start()
        self._queue.put(run_id)

    def cancel(self, run_id: str) -> str:
        """Cancel a queued run at once, or ask a running one to stop; returns the status after asking."""
        if self.store.set_status(run_id, "cancelled", only_from=("queued",)):
            self.hub.publish(run_id, "cancelled", self.store.get_run(run_id))
            return "cancelled"
        run = self.store.get_run(run_id)
        if run and run["status"] == "running":
            self._cancel.add(run_id)
        return run["status"] if run else "unknown"

    # ------------------------------------------------------------ worker
    def _work(self) -> None:
        while not self._stopping.is_set():
            run_id = self._queue.get()
            if run_id is None:
                break
            if not self.store.set_status(run_id, "running", only_from=("queued",)):
                continue  # cancelled (or gone) while queued
            self.current = run_id
            try:
                self._run(run_id)
            finally:
                self.current = None
                self._cancel.discard(run_id)

    def _run(self, run_id: str) -> None:
        run = self.store.get_run(run_id)
        last = [0.0, -1.0, None]  # time, fraction and stage of the last recorded progress

        def report(fraction: float, stage: str | None = None) -> None:
            if run_id in self._cancel:
                raise Cancelled(run_id)
            now = time.monotonic()
            # at most one record per interval, but every new stage and the end of the work are shown
            if now - last[0] >= self.min_interval_s or stage != last[2] or (fraction >= 1.0 and last[1] < 1.0):
                last[:] = [now, fraction, stage]
                self.store.set_progress(run_id, fraction, stage)
                self.hub.publish(run_id, "progress", {"id": run_id, "status": "running",
                                                      "progress": fraction, "stage": stage})

        self.hub.publish(run_id, "progress", {"id": run_id, "status": "running", "progress": 0.0, "stage": "starting"})
        try:
            self.execute(run, report)
        except Cancelled:
            if self._stopping.is_set():  # the server is shutting down, nobody asked to cancel
                self.store.set_status(run_id, "failed", error=INTERRUPTED.format("running"))
                self.hub.publish(run_id, "failed", self.store.get_run(run_id))
            else:
                self.store.set_status(run_id, "cancelled", error="cancelled by request")
                self.hub.publish(run_id, "cancelled", self.store.get_run(run_id))
            return
        except Exception as e:  # noqa: BLE001 - any failure of a run is the run's, never the server's
            log.error("run %s failed:\n%s", run_id, traceback.format_exc())
            self.store.set_status(run_id, "failed", error=f"{type(e).__name__}: {e}")
            self.hub.publish(run_id, "failed", self.store.get_run(run_id))
            return
        if self.store.get_run(run_id)["status"] != "done":
            self.store.set_status(run_id, "done")
        self.hub.publish(run_id, "done", self.store.get_run(run_id))
