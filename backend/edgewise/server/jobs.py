"""The job queue: `concurrency` supervised worker threads (default 1) run queued runs, publish their
events, and cancel a running job by raising from its progress callback.

Events (what /api/runs/{id}/events streams): ("progress", {id, status, progress, stage, detail?})
while a run works, ("scored", run) once its scores are stored, ("curve", point + {index, total}) per
faithfulness-curve point, ("mib", scores) after the curve, then one of ("done" | "failed" | "cancelled",
run) at its end.

Supervision: a worker catches everything a run raises, and its loop never ends on an error. When the
store cannot record a run's end (disk full, I/O error), the final state is kept in memory (`final`),
published anyway so event streams end, shown by the API in place of the stored row, and written to
the store as soon as a write succeeds again.
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
RETRIES_S = (0.1, 0.3, 1.0, 2.0, 4.0)  # waits between attempts at a store write that must not be lost


class Cancelled(Exception):
    """Raised inside a job (from its progress callback) when the run was cancelled."""


class EventHub:
    """Fan-out of run events from worker threads to asyncio subscribers (one queue each)."""

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


class Job:
    """What a running job reports through: progress (which raises once cancelled), its scores, its curve."""

    def __init__(self, queue_: "JobQueue", run: dict):
        self.q, self.run, self.id = queue_, run, run["id"]
        self.is_scored = False
        self.points: list[dict] = []
        self.total_points = 0
        self._last = (0.0, -1.0, None)  # time, fraction and stage of the last recorded progress

    def report(self, fraction: float, stage: str | None = None, detail: str | None = None) -> None:
        if self.id in self.q._cancel:
            raise Cancelled(self.id)
        now = time.monotonic()
        t, f, s = self._last
        # at most one record per interval, but every new stage and the end of the work are shown
        if now - t < self.q.min_interval_s and stage == s and not (fraction >= 1.0 > f) and detail is None:
            return
        self._last = (now, fraction, stage)
        try:
            self.q.store.set_progress(self.id, fraction, stage)
        except Exception as e:  # noqa: BLE001 - progress is a courtesy; the run goes on without it
            log.warning("run %s: progress not stored: %s", self.id, e)
        data = {"id": self.id, "status": "running", "progress": fraction, "stage": stage}
        if detail:
            data["detail"] = detail
        self.q.hub.publish(self.id, "progress", data)

    def scored(self, cfg: dict, scores, warnings: list[str], n_points: int = 0) -> None:
        """The scores are stored (`scored`); n_points curve points will follow."""
        self.q.store.save_scores(self.id, cfg=cfg, scores=scores, warnings=warnings)
        self.is_scored, self.total_points = True, n_points
        self.q.hub.publish(self.id, "scored", self.q.store.get_run(self.id))

    def curve_point(self, point: dict, index: int, total: int) -> None:
        self.points.append(point)
        self.total_points = total
        self.q.store.set_curve(self.id, self.points)
        self.q.hub.publish(self.id, "curve", {**point, "index": index, "total": total})

    def mib(self, scores: dict) -> None:
        """MIB's CPR/CMD are stored (GET /mib) and published."""
        self.q.store.set_mib(self.id, scores)
        self.q.hub.publish(self.id, "mib", scores)


class JobQueue:
    """Runs `execute(run, job)` for queued run ids in `concurrency` worker threads."""

    def __init__(self, store: Store, hub: EventHub, execute: Callable[[dict, Job], None], concurrency: int = 1,
                 min_interval_s: float = 0.1):
        self.store, self.hub, self.execute = store, hub, execute
        self.concurrency, self.min_interval_s = max(1, concurrency), min_interval_s
        self._queue: queue.Queue = queue.Queue()
        self._cancel: set[str] = set()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.running: set[str] = set()
        self.final: dict[str, dict] = {}  # run id -> final fields the store could not record yet

    # ------------------------------------------------------------ control
    def start(self) -> None:
        """Start the workers, or replace any that died (never expected: the loop catches everything)."""
        with self._lock:
            self._stopping.clear()
            self._workers = [t for t in self._workers if t.is_alive()]
            while len(self._workers) < self.concurrency:
                t = threading.Thread(target=self._work, name=f"edgewise-worker-{len(self._workers)}", daemon=True)
                self._workers.append(t)
                t.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel the running jobs, stop the workers; queued runs stay queued (marked interrupted at next start)."""
        self._stopping.set()
        self._cancel.update(self.running)
        for _ in self._workers:
            self._queue.put(None)
        for t in self._workers:
            t.join(timeout)

    def submit(self, run_id: str) -> None:
        self.start()
        self._flush_final()
        self._queue.put(run_id)

    def n_queued(self) -> int:
        """Run ids waiting for a worker (those cancelled while queued are skipped when reached)."""
        return self._queue.qsize()

    def cancel(self, run_id: str) -> str:
        """Cancel a queued run at once, or ask a running one to stop; returns the status after asking."""
        if self.store.set_status(run_id, "cancelled", error="cancelled by request", only_from=("queued",)):
            self.hub.publish(run_id, "cancelled", self.store.get_run(run_id))
            return "cancelled"
        if run_id in self.running:
            self._cancel.add(run_id)
            return "running"
        run = self.overlay(self.store.get_run(run_id))
        if run and run["status"] == "running":  # no worker has it (the store missed its end): end it now
            self._end(run_id, "cancelled", "cancelled by request (no worker was running it)")
            return "cancelled"
        return run["status"] if run else "unknown"

    def overlay(self, run: dict | None) -> dict | None:
        """A stored run with any final state the store has not recorded yet."""
        if run is not None and run["id"] in self.final:
            return {**run, **self.final[run["id"]]}
        return run

    # ------------------------------------------------------------ workers
    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                run_id = self._queue.get()
                if run_id is None:
                    break
                self._flush_final()
                self.running.add(run_id)  # before it moves: a cancel from now on reaches the job
                try:
                    ok, moved = self._write(lambda: self.store.set_status(run_id, "running", only_from=("queued",)),
                                            f"start run {run_id}")
                    if not ok:  # the store refuses every write: the run cannot start, say so
                        self._end(run_id, "failed", "the data directory cannot be written (disk full?); start it again")
                    elif moved:  # else: cancelled (or deleted) while queued
                        self._run(run_id)
                finally:
                    self.running.discard(run_id)
                    self._cancel.discard(run_id)
            except BaseException:  # noqa: BLE001 - a worker outlives anything a run or the store does
                log.error("worker error (the worker goes on):\n%s", traceback.format_exc())

    def _run(self, run_id: str) -> None:
        run = self.store.get_run(run_id)
        job = Job(self, run)
        self.hub.publish(run_id, "progress", {"id": run_id, "status": "running", "progress": 0.0, "stage": "starting"})
        try:
            self.execute(run, job)
        except Cancelled:
            if self._stopping.is_set():  # the server is shutting down, nobody asked to cancel
                self._end(run_id, "failed", INTERRUPTED.format("running"))
            elif job.is_scored:  # the scores stay; the curve (or MIB's points after it) stops where it is
                whole = len(job.points) >= job.total_points
                note = ("cancelled during the MIB scores (the faithfulness curve is complete)" if whole else
                        f"cancelled during the faithfulness curve: {len(job.points)} of {job.total_points} points computed")
                self._end(run_id, "done", None, warnings=self._warnings(run_id) + [note], curve_complete=whole)
            else:
                self._end(run_id, "cancelled", "cancelled by request")
            return
        except Exception as e:  # noqa: BLE001 - any failure of a run is the run's, never the server's
            log.error("run %s failed:\n%s", run_id, traceback.format_exc())
            self._end(run_id, "failed", f"{type(e).__name__}: {e}")
            return
        self._end(run_id, "done", None, curve_complete=True)

    def _warnings(self, run_id: str) -> list[str]:
        try:
            return self.store.get_run(run_id)["warnings"]
        except Exception:  # noqa: BLE001
            return []

    def _end(self, run_id: str, status: str, error: str | None, warnings: list[str] | None = None,
             curve_complete: bool = False) -> None:
        """Record and publish a run's end; if the store cannot record it, keep it in `final` and retry later."""
        fields = {"status": status, "error": error, "finished_at": time.time(), "curve_complete": curve_complete,
                  "stage": None, **({"progress": 1.0} if status == "done" else {}),
                  **({"warnings": warnings} if warnings is not None else {})}
        self.final[run_id] = fields  # shown at once, whatever the store does
        try:
            run = self.overlay(self.store.get_run(run_id)) or {"id": run_id, **fields}
        except Exception:  # noqa: BLE001 - the store cannot even be read: publish what is known
            run = {"id": run_id, **fields}
        self.hub.publish(run_id, status, run)
        ok, _ = self._write(lambda: self.store.finish(run_id, status, error=error, warnings=warnings,
                                                      curve_complete=curve_complete), f"record the end of run {run_id}")
        if ok:
            self.final.pop(run_id, None)

    def _write(self, write: Callable[[], object], what: str) -> tuple[bool, object]:
        """A store write retried over ~7 s: (whether it succeeded, what it returned)."""
        for wait in (*RETRIES_S, None):
            try:
                return True, write()
            except Exception as e:  # noqa: BLE001 - the store may be full or failing; try again
                if wait is None:
                    log.error("could not %s: %s (kept in memory; retried later)", what, e)
                    return False, None
                time.sleep(wait)
        return False, None

    def _flush_final(self) -> None:
        """Write the ends the store missed, now that it may accept writes again."""
        for run_id, f in list(self.final.items()):
            try:
                self.store.finish(run_id, f["status"], error=f["error"], warnings=f.get("warnings"),
                                  curve_complete=f["curve_complete"])
                self.final.pop(run_id, None)
            except Exception:  # noqa: BLE001
                return
