"""Helpers of the Ray tests: a slow metric the actors can run, and what the pool's actors are doing.

This module is pickled by value (actors cannot import tests/), so the metric below reaches them.
"""
from __future__ import annotations

import os
import signal
import sys
import time

import ray
import ray.cloudpickle

from edgewise.metrics import Metric, logit_diff

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
PAUSE_S = 0.25
WAIT_S = 60.0  # the longest any helper waits on the cluster


def _slow_logit_diff(logits, batch):
    time.sleep(PAUSE_S)
    return logit_diff(logits, batch)


# logit_diff after a pause: a shard of a few batches lasts long enough to be killed or cancelled mid-task
SLOW = Metric("slow_logit_diff", _slow_logit_diff, "logit_diff, slowly", needs_answers=True)


def statuses(pool) -> list[dict]:
    """Each actor's replica.status(); an actor that just died shows as idle with no pid."""
    out = []
    for ref in [s.actor.status.remote() for s in pool.slots]:
        try:
            out.append(ray.get(ref, timeout=WAIT_S))
        except ray.exceptions.RayActorError:
            out.append({"pid": None, "busy": None, "tasks": 0, "cancelled": 0})
    return out


def kill_busy_actor(pool) -> int | None:
    """SIGKILL the process of an actor that is inside a task now; its pid, or None when none is."""
    for st in statuses(pool):
        if st["busy"] is not None:
            os.kill(st["pid"], signal.SIGKILL)
            return st["pid"]
    return None


def wait_idle(pool, timeout: float = WAIT_S) -> list[dict]:
    """The actors' statuses once none computes (restarted ones included)."""
    deadline = time.monotonic() + timeout
    while True:
        st = statuses(pool)
        if all(s["busy"] is None and s["pid"] for s in st) or time.monotonic() > deadline:
            return st
        time.sleep(0.1)


def rel_err(a, b) -> float:
    """max |a − b| over max |b|: entries near 0 carry no relative precision of their own."""
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())
