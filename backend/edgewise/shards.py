"""Shards of one pass over a pool of Ray actors: leased one shard at a time, watched, retried, cancelled.

A pass (the means of mean ablation, attribution, a set of circuits' metrics) is cut into shards of
whole batches. `run_shards` hands each shard to the next free actor of the pool, up to `workers` at
once, and returns the shards' results in shard order (so the driver adds them in a fixed order).
Several passes (several runs of the web app) share one pool: an actor goes to the pass holding the
fewest actors, one shard at a time. Every TICK_S the pass polls its actors' progress and calls
`progress(fraction)` with the pass's share of pairs done; when that raises (a cancel), every actor
working for the pass is told to stop at its next unit of work, and the exception goes on.

A dead actor (its process killed: Ray restarts it, the task it ran is lost) costs its shard one
retry on any free actor; a shard lost twice ends the pass with ShardLost. A shard that raises
(a bad metric, a model that does not load) ends the pass with that error at once. Every wait has a
deadline: nothing here waits without bound on the cluster.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Callable

from .replica import ShardCancelled

log = logging.getLogger("edgewise.shards")
TICK_S = 0.1         # how often a pass polls its actors and reports progress
CANCEL_WAIT_S = 10.0  # how long a cancelled pass waits for its actors to stop
RETRIES = 1           # a shard whose actor died is run again this many times
RESTART_WAIT_S = 120.0  # a pass ends when every actor has been restarting for this long
SHARDS_PER_WORKER = 4  # several shards per worker: balance (prompt lengths vary) and a small loss on a death


class ShardLost(RuntimeError):
    """A shard's actor died on every attempt: the pass has no sum for those pairs."""


@dataclass
class Shard:
    index: int
    work: list         # batches: lists of pair indices, or batch numbers
    n_pairs: int
    attempts: int = 0


def plan(batches: list, sizes: list[int], workers: int) -> list[Shard]:
    """Contiguous runs of whole batches, about SHARDS_PER_WORKER per worker (at most one per batch),
    of near-equal pair counts. `sizes`: pairs per batch."""
    n = max(1, min(len(batches), workers * SHARDS_PER_WORKER))
    cum = list(itertools.accumulate(sizes))
    cuts = [0]
    for k in range(1, n):
        # the first batch boundary where k/n of the pairs are reached, leaving a batch for each later shard
        b = next(i + 1 for i, c in enumerate(cum) if c >= cum[-1] * k / n)
        cuts.append(min(max(b, cuts[-1] + 1), len(batches) - (n - k)))
    cuts.append(len(batches))
    return [Shard(k, batches[a:b], sum(sizes[a:b])) for k, (a, b) in enumerate(zip(cuts, cuts[1:]))]


@dataclass
class Slot:
    """One actor of the pool. `ref`: the task it runs for `owner`, a cancelled task it still finishes,
    or (`recovering`) a status call that answers once Ray has restarted its process."""

    actor: object
    index: int
    owner: str | None = None
    ref: object = None
    recovering: float | None = None  # since when (monotonic) its process is being restarted


def _ping(actor):
    return actor.status.remote()


class Pool:
    """Actors of one resource shape, shared by every pass of this process."""

    def __init__(self, ray, make_actor: Callable[[], object], capacity: Callable[[], int]):
        self.ray, self.make_actor, self.capacity = ray, make_actor, capacity
        self.slots: list[Slot] = []
        self._lock = threading.Lock()
        self._grow = threading.Lock()
        self._held: dict[str, int] = {}  # pass -> actors it holds
        self._wanting: set[str] = set()  # passes with shards still to hand out

    def ensure(self, n: int, timeout_s: float = 120.0) -> list[str]:
        """Grow to n actors (as many as the cluster has room for); warnings for any shortfall."""
        with self._grow:
            room = self.capacity()
            want = min(n, max(room, len(self.slots), 1))
            notes = [] if want >= n else [f"{n} workers asked for, the cluster has room for {room}; using {want}"]
            new = [self.make_actor() for _ in range(want - len(self.slots))]
            if not new:
                return notes
            pings = {_ping(a): a for a in new}
            ready, late = self.ray.wait(list(pings), num_returns=len(pings), timeout=timeout_s)
            for ref in late:  # never scheduled (resources held elsewhere): not part of the pool
                self.ray.kill(pings[ref])
            started = []
            for ref in ready:
                try:
                    self.ray.get(ref)
                    started.append(pings[ref])
                except self.ray.exceptions.RayError as e:
                    notes.append(f"a Ray actor failed to start: {e}")
            with self._lock:
                self.slots += [Slot(a, len(self.slots) + i) for i, a in enumerate(started)]
            if late:
                notes.append(f"{len(late)} Ray actor(s) did not start within {timeout_s:g} s; using {len(self.slots)}")
            if not self.slots:
                raise RuntimeError(f"no Ray actor could start within {timeout_s:g} s; " + "; ".join(notes))
            return notes

    def acquire(self, owner: str, limit: int) -> Slot | None:
        """A free actor for `owner`, unless it holds `limit` already or another pass that waits for
        one holds fewer (max-min fair: concurrent runs end up with equal shares)."""
        with self._lock:
            self._wanting.add(owner)
            held = self._held.setdefault(owner, 0)
            if held >= limit or any(self._held.get(o, 0) < held for o in self._wanting if o != owner):
                return None
            for slot in self.slots:
                if slot.owner is None and self._free(slot):
                    slot.owner, slot.ref = owner, None
                    self._held[owner] = held + 1
                    return slot
            return None

    def _free(self, slot: Slot) -> bool:
        if slot.ref is None:
            return True
        if not self.ray.wait([slot.ref], timeout=0)[0]:
            return False
        if slot.recovering is not None:
            try:
                self.ray.get(slot.ref)
            except self.ray.exceptions.ActorDiedError:  # out of restarts: a new actor in its place
                slot.actor = self.make_actor()
                slot.ref = _ping(slot.actor)
                return False
            except self.ray.exceptions.RayError:  # asked before Ray saw the death: ask again
                slot.ref = _ping(slot.actor)
                return False
            slot.recovering = None
        slot.ref = None
        return True

    def satisfied(self, owner: str) -> None:
        """`owner` has no shard left to hand out: it no longer waits for actors."""
        with self._lock:
            self._wanting.discard(owner)

    def release(self, slot: Slot, draining=None, died: bool = False) -> None:
        """Give an actor back. `draining`: a cancelled task it may still run (busy until done);
        `died`: its process died; it is handed out again once Ray has restarted it."""
        with self._lock:
            if slot.owner in self._held:
                self._held[slot.owner] -= 1
            slot.owner, slot.ref = None, draining
            if died:
                slot.ref, slot.recovering = _ping(slot.actor), time.monotonic()

    def leave(self, owner: str) -> None:
        with self._lock:
            self._wanting.discard(owner)
            self._held.pop(owner, None)

    def busy(self) -> int:
        """Actors computing for a pass now (or finishing a cancelled task)."""
        with self._lock:
            return sum(1 for s in self.slots if s.recovering is None and (s.owner is not None or (
                s.ref is not None and not self.ray.wait([s.ref], timeout=0)[0])))

    def down_since(self) -> float | None:
        """Since when every actor has been restarting (None while one is up)."""
        with self._lock:
            times = [s.recovering for s in self.slots]
        return max(times) if times and all(t is not None for t in times) else None


def run_shards(pool: Pool, shards: list[Shard], submit: Callable, workers: int, progress=None,
               what: str = "pass") -> list:
    """Results of `submit(actor, shard, task_id)` (an ObjectRef) for every shard, in shard order."""
    ray = pool.ray
    owner = uuid.uuid4().hex
    todo, running = deque(shards), {}  # ObjectRef -> (slot, shard)
    results: dict[int, object] = {}
    done_pairs, total = 0, sum(s.n_pairs for s in shards) or 1
    polls: dict[int, tuple] = {}  # shard index -> (poll ObjectRef, last fraction)
    try:
        while todo or running:
            while todo:
                slot = pool.acquire(owner, workers)
                if slot is None:
                    break
                shard = todo.popleft()
                slot.ref = submit(slot.actor, shard, f"{owner}/{shard.index}")
                running[slot.ref] = (slot, shard)
            if not todo:
                pool.satisfied(owner)
            if not running:  # every actor works for another pass, or is being restarted: wait for one
                since = pool.down_since()
                if since is not None and time.monotonic() - since > RESTART_WAIT_S:
                    raise ShardLost(f"{what}: every Ray actor has been down for {RESTART_WAIT_S:g} s "
                                    f"({len(todo)} of {len(shards)} shards not computed)")
                time.sleep(TICK_S)
            ready = ray.wait(list(running), num_returns=1, timeout=TICK_S)[0] if running else []
            for ref in ready:
                slot, shard = running.pop(ref)
                polls.pop(shard.index, None)
                died = False
                try:
                    results[shard.index] = ray.get(ref)
                    done_pairs += shard.n_pairs
                except ray.exceptions.RayActorError as e:  # the process died; Ray restarts the actor
                    died = True
                    shard.attempts += 1
                    if shard.attempts > RETRIES:
                        raise ShardLost(f"{what}: shard {shard.index + 1} of {len(shards)} ({shard.n_pairs} pairs) "
                                        f"was lost {shard.attempts} times: its Ray actor died each time "
                                        f"({type(e).__name__}); no partial sum is returned") from None
                    log.warning("%s: shard %d lost with its actor (%s); retrying it once", what, shard.index + 1,
                                type(e).__name__)
                    todo.appendleft(shard)
                except ray.exceptions.RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    raise (cause if isinstance(cause, Exception) else RuntimeError(str(e))) from None
                finally:
                    pool.release(slot, died=died)
            if progress:
                progress(min(1.0, (done_pairs + _running_pairs(ray, running, polls)) / total))
    except BaseException:
        _cancel(pool, owner, running)
        raise
    finally:
        pool.leave(owner)
    return [results[s.index] for s in shards]


def _running_pairs(ray, running: dict, polls: dict) -> float:
    """Pairs done so far by the running shards, from each actor's last answered progress poll."""
    out = 0.0
    for slot, shard in running.values():
        ref, last = polls.get(shard.index, (None, 0.0))
        if ref is not None and ray.wait([ref], timeout=0)[0]:
            try:
                last = ray.get(ref) or last
            except ray.exceptions.RayError:
                pass  # a dead actor: its task's own ref says so
            ref = None
        if ref is None:
            ref = slot.actor.progress.remote(f"{slot.owner}/{shard.index}")
        polls[shard.index] = (ref, last)
        out += last * shard.n_pairs
    return out


def _cancel(pool: Pool, owner: str, running: dict) -> None:
    """Tell every actor of this pass to stop, give them back (busy until their task ends), and wait
    up to CANCEL_WAIT_S for them."""
    ray = pool.ray
    for ref, (slot, _) in running.items():
        try:
            slot.actor.cancel.remote(owner)
        except Exception as e:  # noqa: BLE001 - a dead actor needs no telling
            log.debug("cancel not sent: %s", e)
        pool.release(slot, draining=ref)
    if running:
        ray.wait(list(running), num_returns=len(running), timeout=CANCEL_WAIT_S)
    for ref in running:  # fetch the ends, so no error stays unread in the object store
        try:
            ray.get(ref, timeout=0)
        except (ray.exceptions.RayError, ShardCancelled, TimeoutError, Exception):  # noqa: BLE001
            pass
    running.clear()
