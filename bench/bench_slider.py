"""Time per "Edge threshold" slider step in the browser, on a GPT-2-small-shaped graph.

A synthetic circuit of 12 layers × 12 heads (32,491 edges, heavy-tailed random scores) is imported
with POST /api/circuits (no weights needed), opened in Debian's chromium, and the slider is moved the
way a user drags it: set the range input's value, fire `input`, wait for the frame that draws it.
At most 2,000 edges are in cytoscape at once. Printed, not asserted:

    update  the synchronous work of one step (select top k, diff, cy.batch add/remove)
    frame   from the input event until two animation frames later (cytoscape has drawn it)

For reference, the last lines draw all 32,491 edges at once (what the 2,000 cap avoids).

    .venv/bin/python bench/bench_slider.py [--steps 80]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from edgewise.graph import Graph, GraphConfig

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]

SWEEP = """async (positions) => {
  const input = document.getElementById('threshold');
  const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const out = [];
  for (const p of positions) {
    const before = window.__edgewise.k;
    const t0 = performance.now();
    input.value = String(p);
    input.dispatchEvent(new Event('input', {bubbles: true}));
    const t1 = performance.now();
    await frame();
    const t2 = performance.now();
    out.push({pos: p, k: window.__edgewise.k, from: before, drawn: window.__edgewise.cy.edges().length,
              update_ms: t1 - t0, frame_ms: t2 - t0});
  }
  return out;
}"""

ALL_EDGES = """async (runId) => {
  const cy = window.__edgewise.cy;
  const data = await (await fetch(`/api/runs/${runId}/edges`)).json();
  const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const shown = new Set(cy.edges().map((e) => e.id()));
  const t0 = performance.now();
  cy.batch(() => cy.add(data.edges.filter((e) => !shown.has(e.name)).map((e) => ({group: 'edges',
    data: {id: e.name, source: e.src, target: e.dst, qkv: e.qkv || '', score: e.score, w: 0.3, bow: 0,
      color: '#0072B2', width: 2.6, opacity: 0.55}}))));  // the look frontend/js/look.js gives w = 0.3
  const t1 = performance.now();
  await frame();
  const t2 = performance.now();
  cy.panBy({x: 5, y: 0});
  await frame();
  const t3 = performance.now();
  return {n: cy.edges().length, add_ms: t1 - t0, first_frame_ms: t2 - t0, pan_frame_ms: t3 - t2};
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def synthetic_circuit(seed: int = 0) -> dict:
    """GPT-2 small's graph (32,491 edges) with scores ~ ±Pareto: a few strong edges, a long tail."""
    g = Graph(GraphConfig(n_layers=12, n_heads=12, d_model=768))
    rng = random.Random(seed)
    edges = {n: {"score": rng.choice((-1, 1)) * rng.paretovariate(1.5) * 1e-3, "in_graph": False} for n in g.edge_names}
    return {"format": "edgewise.circuit/v1", "cfg": g.cfg.to_dict(), "model": "gpt2-synthetic", "method": "synthetic",
            "nodes": {n: {"in_graph": False} for n in g.node_names}, "edges": edges}


def start_server(data: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    exe = Path(sys.executable).with_name("edgewise")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EDGEWISE_DATA": str(data)}
    env.pop("EDGEWISE_TOKEN", None)
    proc = subprocess.Popen([str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(data),
                             "--log-level", "warning"], env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(base + "/api/health", timeout=2).read()
            return proc, base
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("edgewise serve did not start")
            time.sleep(0.3)


def summary(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(0.95 * len(xs)))]
    return f"median {statistics.median(xs):6.1f} ms   p95 {p95:6.1f} ms   max {xs[-1]:6.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=80, help="slider positions per sweep (each sweep goes up and down)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_server(Path(tmp))
        try:
            body = json.dumps(synthetic_circuit()).encode()
            req = urllib.request.Request(base + "/api/circuits", body, {"Content-Type": "application/json"})
            run = json.load(urllib.request.urlopen(req, timeout=60))
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                t0 = time.perf_counter()
                page.goto(f"{base}/?run={run['id']}&k=200")
                page.wait_for_function("() => window.__edgewise && window.__edgewise.ready", timeout=60_000)
                open_s = time.perf_counter() - t0
                up = [round(i * 1000 / (args.steps - 1)) for i in range(args.steps)]
                page.evaluate(SWEEP, [0])
                steps = page.evaluate(SWEEP, up + up[::-1])
                jumps = page.evaluate(SWEEP, [0, 1000] * 5)
                page.screenshot(path=str(Path(tempfile.gettempdir()) / "edgewise-bench-slider.png"))
                everything = page.evaluate(ALL_EDGES, run["id"])
                browser.close()
        finally:
            proc.terminate()
            proc.wait(10)

    print(f"graph: 12 layers x 12 heads, {run.get('n_edges') or 32491} edges; at most 2,000 drawn; chromium headless, software rendering")
    print(f"open the run (page load, 2,000 edges fetched, first draw): {open_s:.2f} s")
    moved = [s for s in steps if s["k"] != s["from"]]
    print(f"drag sweep, {len(moved)} steps (k from 1 to 2,000 and back, log scale):")
    print(f"  update {summary([s['update_ms'] for s in moved])}")
    print(f"  frame  {summary([s['frame_ms'] for s in moved])}")
    for lo, hi in ((1, 100), (100, 1000), (1000, 2001)):
        part = [s for s in moved if lo <= max(s["k"], s["from"]) < hi]
        if part:
            print(f"  k in [{lo}, {hi - 1}]: frame median {statistics.median(s['frame_ms'] for s in part):6.1f} ms "
                  f"({len(part)} steps)")
    big = [s for s in jumps if s["k"] != s["from"]]
    print(f"jump 1 <-> 2,000 edges ({len(big)} steps): update {summary([s['update_ms'] for s in big])}")
    print(f"                          frame  {summary([s['frame_ms'] for s in big])}")
    assert all(s["drawn"] <= 2000 for s in steps + jumps)
    print(f"for reference, all {everything['n']} edges in cytoscape: add {everything['add_ms']:.0f} ms, "
          f"first frame {everything['first_frame_ms']:.0f} ms, one pan frame {everything['pan_frame_ms']:.0f} ms")


if __name__ == "__main__":
    main()
