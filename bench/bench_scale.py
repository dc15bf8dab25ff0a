"""Scaling out on Ray: wall time of `eap` on a GPT-2-small-shaped model (random weights, a local
checkpoint folder the actors load by path), 1 vs 2 workers, and Ray's overhead per run on a tiny model.

Every number is measured in this run: median over --repeats, the worker counts interleaved so a
neighbour's load hits both alike. Actors are warmed first (model loaded, pairs fetched), as they are
for every run after a server's first. Workers are CPU actors of one core each (one torch thread),
compared with one in-process thread; with a GPU in the cluster they are one actor per GPU (`--gpu`
compares against in-process on the driver's GPU). On a 2-core machine shared with other work the
2-worker ratio is bounded by what the neighbours leave: say so next to the numbers.
Run: `python bench/bench_scale.py` (about 3 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local cluster on loopback only
os.environ.setdefault("RAY_worker_niceness", "0")  # Ray renices its workers to 15: on a shared machine that, not Ray, would show

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_attribution import random_pairs  # noqa: E402

import edgewise as ew  # noqa: E402
from edgewise import distributed as D  # noqa: E402


def gpt2_checkpoint(folder: Path, **shape) -> Path:
    """A GPT-2 checkpoint folder of random weights (no tokenizer: pairs are token ids)."""
    import transformers as T

    torch.manual_seed(0)
    T.GPT2LMHeadModel(T.GPT2Config(**shape)).save_pretrained(folder)
    return folder


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def actor_cpu_s() -> float:
    """CPU seconds used so far by every actor of the pool (replica.status)."""
    import ray

    return sum(s["cpu_s"] for s in ray.get([slot.actor.status.remote() for slot in D.get_pool().slots]))


def timed_ray(fn, cores: list[float]) -> float:
    """Wall seconds of fn(); appends the cores its actors got on average (their CPU seconds / wall)."""
    c0, t0 = actor_cpu_s(), time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    cores.append((actor_cpu_s() - c0) / wall)
    return wall


def overhead(tiny: str, ray_address, n: int) -> None:
    """Ray's cost per run on a tiny model (16 pairs, one batch): the first run on a fresh cluster
    (actors start, one loads the model) and later runs (warm actor) against in-process."""
    tmodel = ew.load_model(tiny)
    tpairs = random_pairs(tmodel, 16, 8)
    kw = dict(method="eap", batch_size=16, ray_address=ray_address)
    (first,) = timed(lambda: D.attribute(tiny, tpairs, workers=2, **kw), 1)
    local = timed(lambda: ew.attribute(tmodel, tpairs, method="eap", batch_size=16), n)
    remote = timed(lambda: D.attribute(tiny, tpairs, workers=2, **kw), n)
    print(f"Ray overhead per run (tiny model, 16 pairs, 1 batch): first run {first:.2f} s (2 actors start, one "
          f"loads the model); warm actors {statistics.median(remote) - statistics.median(local):.3f} s "
          f"(Ray {statistics.median(remote):.3f} s, in-process {statistics.median(local):.3f} s, median of {n})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ray-address", default=None, help="an existing cluster (default: a local one, 2 CPUs)")
    ap.add_argument("--gpu", action="store_true", help="workers are GPUs; in-process runs on cuda")
    ap.add_argument("--overhead-only", action="store_true", help="only the tiny model's Ray overhead")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import ray

    if args.ray_address is None:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    with tempfile.TemporaryDirectory() as tmp:
        big = gpt2_checkpoint(Path(tmp) / "gpt2-small")  # GPT2Config() is GPT-2 small: 12 x 12 heads, 768
        tiny = gpt2_checkpoint(Path(tmp) / "tiny", n_layer=2, n_head=2, n_embd=16, vocab_size=64, n_positions=64)
        overhead(str(tiny), args.ray_address, 5 * args.repeats)
        if args.overhead_only:
            return 0
        device = "cuda" if args.gpu else "cpu"
        model = ew.load_model(str(big), device=device)
        pairs = random_pairs(model, args.pairs, args.tokens)
        kw = dict(method="eap", batch_size=args.batch_size, ray_address=args.ray_address)

        print(f"eap, GPT-2-small shape ({ew.Graph.from_model(model).n_edges} edges), {args.pairs} pairs x "
              f"{args.tokens} tokens, batch {args.batch_size}, {os.cpu_count()} cores here")
        for w in (1, 2):  # warm: each actor loads the model and fetches the pairs once
            D.attribute(str(big), pairs, workers=w, **kw)
        times, cores = {"in-process": [], 1: [], 2: []}, {1: [], 2: []}
        for _ in range(args.repeats):
            times["in-process"] += timed(lambda: ew.attribute(model, pairs, method="eap", batch_size=args.batch_size), 1)
            for w in (1, 2):
                times[w].append(timed_ray(lambda: D.attribute(str(big), pairs, workers=w, **kw), cores[w]))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"  in-process, 1 thread   {med['in-process']:7.2f} s   (runs: {_fmt(times['in-process'])})")
        for w in (1, 2):  # cores: what the neighbours left the actors (2 workers on 2 free cores: ~2)
            print(f"  Ray, {w} worker{'s' * (w > 1)}          {med[w]:7.2f} s   (runs: {_fmt(times[w])}; "
                  f"cores the actors got: {_fmt(cores[w])})")
        print(f"  1 worker / in-process   {med[1] / med['in-process']:.2f}")
        print(f"  1 worker / 2 workers    {med[1] / med[2]:.2f}   (speed-up of the second worker)")
    return 0


def _fmt(xs: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in xs)


if __name__ == "__main__":
    sys.exit(main())
