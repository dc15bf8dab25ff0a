"""Shared helpers of the API tests: a catalog of tiny random models, an app on a temp data dir."""
from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch
from conftest import random_pairs, tiny_model

import edgewise as ew
from edgewise.metrics import logit_diff, register_metric
from edgewise.server import Catalog, Settings

TINY = dict(seed=0, n_layers=2, n_heads=2, d_model=16, dtype=torch.float32)
FINAL = ("done", "failed", "cancelled")



def _slow(logits, batch):
    time.sleep(0.03)
    return logit_diff(logits, batch)


def _boom(logits, batch):
    raise RuntimeError("boom: this metric always fails")


register_metric("test_slow", _slow, "logit_diff, slowly (cancellation tests)", needs_answers=True)
register_metric("test_boom", _boom, "always raises (failure tests)")


def make_model(name: str = "tiny"):
    if name == "tiny-attn":
        return tiny_model(**{**TINY, "attn_only": True})
    return tiny_model(**TINY)


def tiny_records(n: int = 6, seed: int = 1) -> list[dict]:
    return random_pairs(make_model(), n=n, seed=seed).records


def model_info(name: str) -> dict:
    g = ew.Graph.from_model(make_model(name))
    metrics = ["logit_diff", "kl"] if name == "tiny-attn" else []  # [] = any metric
    return {"name": name, "description": "random test model", "n_layers": g.cfg.n_layers, "n_heads": g.cfg.n_heads,
            "d_model": g.cfg.d_model, "n_edges": g.n_edges, "source": "test", "metrics": metrics}


def tiny_catalog(tasks_dir: Path) -> Catalog:
    """Models "tiny" and "tiny-attn" (attention-only, logit_diff/kl only); task "tiny-task"."""
    tasks_dir.mkdir(parents=True, exist_ok=True)
    pairs = tasks_dir / "tiny-task.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in tiny_records(8)))

    def load(name, device, dtype=None, progress=None):
        if progress:
            progress(0.5, "weights")
        if name not in ("tiny", "tiny-attn"):
            raise ValueError(f"unknown model {name!r}")
        return make_model(name)

    def task_path(name):
        if name != "tiny-task":
            raise ValueError(f"unknown task {name!r}")
        return pairs

    return Catalog(load_model=load, list_models=lambda: [model_info("tiny"), model_info("tiny-attn")],
                   list_tasks=lambda: [{"name": "tiny-task", "model": "tiny", "metric": "logit_diff", "n_pairs": 8,
                                        "has_circuit": False, "description": "random pairs"}],
                   task_pairs_path=task_path, allow_hub=False)


def settings(tmp: Path, **kw) -> Settings:
    """Test settings: TestClient's Host ("testserver") is served like a local name."""
    kw.setdefault("allowed_hosts", ("testserver",))
    kw.setdefault("frontend_dir", tmp / "frontend")
    kw.setdefault("device", "cpu")
    return Settings(data_dir=tmp / "data", catalog=tiny_catalog(tmp / "tasks"), **kw)


def upload(client, records=None, model="tiny") -> dict:
    r = client.post("/api/datasets", json={"model": model, "pairs": records or tiny_records()})
    assert r.status_code == 201, r.text
    return r.json()


def start_run(client, dataset_id, **kw) -> dict:
    body = {"model": "tiny", "dataset_id": dataset_id, "method": "eap", "metric": "logit_diff", "batch_size": 4, **kw}
    r = client.post("/api/runs", json=body)
    assert r.status_code == 202, r.text
    return r.json()


def wait(client, run_id, until=FINAL, timeout=30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/runs/{run_id}").json()
        if run["status"] in until:
            return run
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} still {run['status']} after {timeout} s")


def finished_run(client, **kw) -> dict:
    ds = upload(client)
    run = wait(client, start_run(client, ds["id"], **kw)["id"])
    assert run["status"] == "done", run
    return run


def read_sse(lines) -> list[tuple[str, dict]]:
    """(event, data) pairs from an iterator of SSE lines, up to the final event."""
    return list(sse_events(lines))


def sse_events(lines):
    """(event, data) pairs from an iterator of SSE lines, as they come, up to the final event."""
    event = None
    for line in lines:
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, json.loads(line[6:])
            if event in FINAL:
                return


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc, timeout: float = 15.0) -> None:
    """Terminate a server process; kill it if it does not exit in `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_healthy(base: str, proc, timeout=60.0, headers=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{base}/api/health", timeout=1, headers=headers).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no answer from {base} in {timeout} s")


@contextlib.contextmanager
def real_server(tmp: Path, overrides: dict | None = None, log_level: str = "warning", stderr=subprocess.PIPE,
                stdout=subprocess.DEVNULL):
    """A uvicorn process serving the tiny catalog (tests/api_server_main.py): yields (base URL, process)."""
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve().parent / "api_server_main.py"), str(port), str(tmp),
           json.dumps(overrides or {}), log_level]
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {overrides['token']}"} if overrides and overrides.get("token") else None
    try:
        wait_healthy(base, proc, headers=headers)
        yield base, proc
    finally:
        stop_process(proc)


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process has ever had, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def eap_ig_prune(names: set[str]) -> set[str]:
    """EAP-IG's Graph.prune, written out independently of the engine's prune_connected: drop every node
    without a kept incoming edge (input exempt) or without a kept outgoing edge (logits exempt), and the
    edges that lose an end, until nothing changes."""
    def ends(name: str) -> tuple[str, str]:
        src, dst, _ = ew.Graph.split_edge(name)
        return src, dst

    while True:
        has_out = {ends(e)[0] for e in names}
        has_in = {ends(e)[1] for e in names} | {"input"}
        alive = lambda n: n == "logits" or (n in has_out and n in has_in)  # noqa: E731
        kept = {e for e in names if all(alive(n) for n in ends(e))}
        if kept == names:
            return kept
        names = kept
