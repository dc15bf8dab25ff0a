"""Load: 50 concurrent clients against a real `edgewise serve` on loopback, for --seconds (default 20,
at most 60: it stops by itself). Each client loops over the page's calls (health, run list, run,
ranked edges, curve, circuit download, a faithfulness request, models, tasks) on a finished toy-ioi
run and on an imported GPT-2-sized circuit (32,491 edges). Prints requests/s and p50/p95/p99 latency
per endpoint, and every status seen (a 503 is a faithfulness request refused at once while the
device is busy: by design).

    python bench/bench_load.py [--clients 50] [--seconds 20]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_time_to_graph import start_server  # noqa: E402


def prepare(c: httpx.Client) -> dict:
    """A finished toy-ioi run (16 pairs) and an imported GPT-2-shaped circuit: their ids."""
    lines = c.get("/api/tasks/toy-ioi/pairs").text.splitlines()[:16]
    ds = c.post("/api/datasets", json={"model": "toy-ioi", "pairs": [json.loads(x) for x in lines]}).json()
    run = c.post("/api/runs", json={"model": "toy-ioi", "dataset_id": ds["id"], "batch_size": 16}).json()
    while c.get(f"/api/runs/{run['id']}").json()["status"] not in ("done", "failed", "cancelled"):
        time.sleep(0.1)
    import edgewise as ew

    g = ew.Graph(ew.GraphConfig(12, 12))
    rng = random.Random(0)
    circuit = {"cfg": {"n_layers": 12, "n_heads": 12, "d_model": 768},
               "edges": {n: {"score": rng.gauss(0, 1), "in_graph": i < 100} for i, n in enumerate(g.edge_names)}}
    imp = c.post("/api/circuits", json=circuit).json()
    return {"run": run["id"], "big": imp["id"]}


def calls(ids: dict) -> list[tuple[str, float, str, str, dict | None]]:
    """(endpoint, weight, method, url, json body) in the mix a page makes."""
    r, b = ids["run"], ids["big"]
    return [("GET /api/health", 1, "GET", "/api/health", None),
            ("GET /api/runs", 2, "GET", "/api/runs", None),
            ("GET /api/runs/{id}", 4, "GET", f"/api/runs/{r}", None),
            ("GET /edges?top_k=200", 4, "GET", f"/api/runs/{r}/edges?top_k=200", None),
            ("GET /edges?top_k=2000 (GPT-2 size)", 2, "GET", f"/api/runs/{b}/edges?top_k=2000", None),
            ("GET /curve", 2, "GET", f"/api/runs/{r}/curve", None),
            ("GET /circuit?top_k=100", 1, "GET", f"/api/runs/{r}/circuit?top_k=100", None),
            ("POST /faithfulness", 2, "POST", f"/api/runs/{r}/faithfulness", {"top_k": 20}),
            ("GET /api/models", 1, "GET", "/api/models", None),
            ("GET /api/tasks", 1, "GET", "/api/tasks", None)]


async def client(base: str, mix, deadline: float, seen: dict, statuses: dict, rng: random.Random) -> None:
    names, weights = [m[0] for m in mix], [m[1] for m in mix]
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        while time.monotonic() < deadline:
            name, _, method, url, body = mix[names.index(rng.choices(names, weights)[0])]
            t0 = time.perf_counter()
            try:
                r = await c.request(method, url, json=body)
                status = r.status_code
            except httpx.HTTPError as e:
                status = type(e).__name__
            seen[name].append(time.perf_counter() - t0)
            statuses[name][status] += 1


async def load(base: str, ids: dict, n_clients: int, seconds: float) -> tuple[dict, dict, float]:
    seen, statuses = defaultdict(list), defaultdict(Counter)
    t0 = time.monotonic()
    deadline = t0 + seconds
    await asyncio.gather(*(client(base, calls(ids), deadline, seen, statuses, random.Random(i))
                           for i in range(n_clients)))
    return seen, statuses, time.monotonic() - t0


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1] if len(xs) > 1 else xs[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    seconds = min(args.seconds, 60.0)
    data = Path(tempfile.mkdtemp(prefix="edgewise-load-"))
    proc, base = start_server(data)
    try:
        with httpx.Client(base_url=base, timeout=120) as c:
            ids = prepare(c)
        seen, statuses, elapsed = asyncio.run(load(base, ids, args.clients, seconds))
        health = httpx.get(f"{base}/api/health", timeout=5).status_code
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)
    total = sum(len(v) for v in seen.values())
    print(f"{args.clients} clients, {elapsed:.1f} s, loopback: {total} requests, {total / elapsed:.0f} req/s; "
          f"/api/health after: {health}")
    print(f"{'endpoint':38s} {'req/s':>7s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s}  statuses")
    for name, xs in sorted(seen.items(), key=lambda kv: -len(kv[1])):
        ms = [x * 1000 for x in xs]
        st = ", ".join(f"{k}×{v}" for k, v in sorted(statuses[name].items(), key=lambda kv: str(kv[0])))
        print(f"{name:38s} {len(xs) / elapsed:7.1f} {pct(ms, 50):8.1f} {pct(ms, 95):8.1f} {pct(ms, 99):8.1f}  {st}")


if __name__ == "__main__":
    main()
