"""Time to a drawn graph (issue 9): POST /api/runs → the `scored` event, and → the first /edges answer,
through a real `edgewise serve`, against in-process `ew.attribute` on the same model, pairs, method and
batch size. Model loading is reported apart (the upload loads the model in the server; the runs find it
loaded). Server runs and in-process runs alternate; each server run is cancelled once scored, so its
curve never competes with the next measurement. Medians of --repeats.

    python bench/bench_time_to_graph.py [--model toy-ioi] [--pairs 2000] [--batch-size 32] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path, threads: int | None = None):
    port = free_port()
    exe = shutil.which("edgewise") or str(Path(sys.executable).with_name("edgewise"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    proc = subprocess.Popen([exe, "serve", "--port", str(port), "--data", str(data), "--log-level", "warning"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("edgewise serve did not start")


def server_run(c: httpx.Client, body: dict) -> tuple[float, float]:
    """(seconds from POST to `scored`, seconds from POST to the first /edges answer); the run is then cancelled."""
    t0 = time.perf_counter()
    run = c.post("/api/runs", json=body).json()
    scored = None
    with c.stream("GET", f"/api/runs/{run['id']}/events", timeout=600) as s:
        event = None
        for line in s.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif event in ("scored", "done") and line.startswith("data: "):
                scored = time.perf_counter() - t0
                break
            elif event in ("failed", "cancelled"):
                raise SystemExit(f"run {run['id']} {event}: {line}")
    r = c.get(f"/api/runs/{run['id']}/edges", params={"top_k": 2000})
    r.raise_for_status()
    edges = time.perf_counter() - t0
    if c.post(f"/api/runs/{run['id']}/cancel").status_code == 200:
        while c.get(f"/api/runs/{run['id']}").json()["status"] == "running":
            time.sleep(0.05)
    return scored, edges


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="toy-ioi", help="a bundled task's model (its pairs are repeated)")
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--method", default="eap")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads on both sides (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    import edgewise as ew

    task = ew.load_task(args.model)  # a bundled task of that name: its pairs and metric
    base_records = [json.loads(x) for x in Path(task.pairs_path).read_text().splitlines() if x.strip()]
    records = (base_records * (args.pairs // len(base_records) + 1))[: args.pairs]

    data = Path(tempfile.mkdtemp(prefix="edgewise-bench-"))
    proc, base = start_server(data, args.threads)
    try:
        with httpx.Client(base_url=base, timeout=600) as c:
            t0 = time.perf_counter()
            ds = c.post("/api/datasets", json={"model": args.model, "pairs": records})
            ds.raise_for_status()
            upload_s = time.perf_counter() - t0
            body = {"model": args.model, "dataset_id": ds.json()["id"], "method": args.method,
                    "metric": task.metric, "batch_size": args.batch_size}

            t0 = time.perf_counter()
            model = ew.load_model(args.model)
            load_s = time.perf_counter() - t0
            pairs = ew.PromptPairs.from_records(model, records)

            def in_process() -> float:
                t = time.perf_counter()
                ew.attribute(model, pairs, method=args.method, metric=task.metric, batch_size=args.batch_size)
                return time.perf_counter() - t

            in_process()  # warm both sides once
            server_run(c, body)
            local, scored, edges = [], [], []
            for _ in range(args.repeats):
                local.append(in_process())
                s, e = server_run(c, body)
                scored.append(s)
                edges.append(e)
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)

    med = statistics.median
    print(f"time to graph, {args.model}, {args.pairs} pairs, {args.method}, batch {args.batch_size}, "
          f"{args.threads or 'default'} torch thread(s) each side, "
          f"{args.repeats} alternating repeats (min and median; on a shared machine the min is the least disturbed):")
    for label, xs in (("in-process ew.attribute", local), ("server: POST /api/runs → scored", scored),
                      ("server: POST → first /edges answer", edges)):
        ratio = "" if xs is local else f"   ratio min {min(xs) / min(local):.2f}, median {med(xs) / med(local):.2f}"
        print(f"  {label:36s} min {min(xs):7.3f} s  median {med(xs):7.3f} s{ratio}")
    print(f"  model loading, apart: in-process load {load_s:.2f} s; server upload (load + tokenize) {upload_s:.2f} s")


if __name__ == "__main__":
    main()
