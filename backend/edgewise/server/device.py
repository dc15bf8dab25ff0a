"""One accelerator, shared by run jobs and interactive requests, one pass group at a time.

TransformerLens hooks and hook flags live on the model object, and a device runs one model's passes
well at a time, so every pass holds the device. Run jobs hold it per unit of work: all of attribution
(a long unit), then one faithfulness-curve point at a time (short units). Interactive requests
(`submit`: the faithfulness of one circuit) queue, and are served before the next unit of any job,
on one thread of the device's own: a request that waits holds no thread of the web server (its
route awaits a future). While a long unit holds the device, or when too many requests already wait,
`submit` refuses at once with `DeviceBusy` (an HTTP 503 with Retry-After).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Callable

log = logging.getLogger("edgewise.device")


class DeviceBusy(RuntimeError):
    """The device cannot take an interactive request now; `retry_after` is a hint in seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Device:
    def __init__(self, name: str, max_waiting: int = 16):
        self.name, self.max_waiting = name, max_waiting
        self._cond = threading.Condition()
        self._holder: str | None = None  # what computes now
        self._short = False  # the holder lets go soon (a curve point, an interactive request)
        self._eta: Callable[[], float | None] | None = None  # seconds the long holder still needs, if known
        self._waiting: deque[tuple[Callable, Future, str]] = deque()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ run jobs (worker threads)
    @contextmanager
    def hold(self, what: str, short: bool = False, eta: Callable[[], float | None] | None = None):
        """Hold the device for one unit of a job; waiting interactive requests go first."""
        with self._cond:
            while self._holder is not None or self._waiting:
                self._cond.wait()
            self._holder, self._short, self._eta = what, short, eta
        try:
            yield
        finally:
            self._release()

    @contextmanager
    def hold_if_free(self, what: str):
        """Hold the device only if nothing computes or waits now; yields whether it was taken."""
        with self._cond:
            taken = self._holder is None and not self._waiting
            if taken:
                self._holder, self._short, self._eta = what, True, None
        try:
            yield taken
        finally:
            if taken:
                self._release()

    def _release(self) -> None:
        with self._cond:
            self._holder, self._short, self._eta = None, False, None
            self._cond.notify_all()

    # ------------------------------------------------------------ interactive requests
    def submit(self, fn: Callable, what: str) -> Future:
        """Queue `fn()` for the device; its Future resolves when it has run. DeviceBusy if refused."""
        with self._cond:
            if self._holder is not None and not self._short:
                raise DeviceBusy(f"the device ({self.name}) is busy with {self._holder}; try again in a moment",
                                 self._retry_after())
            if len(self._waiting) >= self.max_waiting:
                raise DeviceBusy(f"{len(self._waiting)} requests already wait for the device ({self.name}); "
                                 "try again in a moment", 2)
            future: Future = Future()
            self._waiting.append((fn, future, what))
            self._start_thread()
            self._cond.notify_all()
        return future

    def _retry_after(self) -> int:
        eta = None
        try:
            eta = self._eta() if self._eta else None
        except Exception:  # noqa: BLE001 - a hint only
            eta = None
        return int(min(60, max(1, round(eta)))) if eta is not None else 5

    def _start_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._serve, name=f"edgewise-device-{self.name}", daemon=True)
            self._thread.start()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._waiting or self._holder is not None:
                    self._cond.wait()
                fn, future, what = self._waiting.popleft()
                if not future.set_running_or_notify_cancel():  # its caller gave up waiting
                    self._cond.notify_all()
                    continue
                self._holder, self._short, self._eta = what, True, None
            t0 = time.perf_counter()
            try:
                future.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - the caller receives it; this thread serves on
                future.set_exception(e)
            finally:
                log.debug("%s took %.3f s", what, time.perf_counter() - t0)
                self._release()

    # ------------------------------------------------------------ introspection
    @property
    def holder(self) -> str | None:
        return self._holder

    @property
    def n_waiting(self) -> int:
        return len(self._waiting)
