"""What the browser tests share: a real `edgewise serve` on a free port with its own data directory,
Debian's chromium driven by Playwright, and helpers that read the page and the API.

Import the fixtures into a test module (`from browser_support import browser, page, server`). One
server serves every module (started by the first, stopped at exit): starting one costs seconds. Skipped only when chromium (or Playwright) is missing outside CI;
`make test` installs both, and in CI (CI set) a missing browser is a failure, not a skip.
"""
from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from api_support import free_port, stop_process

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
# a bundled model and task: offline, deterministic, with real (non-zero) scores; runs use the first
# N_PAIRS pairs (one batch: seconds on a CPU, where all 200 pairs and their faithfulness curve take minutes)
TASK = "toy-ioi"
N_PAIRS = 16

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - decided below
    sync_playwright = None

if sync_playwright is None or not Path(CHROMIUM).exists():
    why = "playwright is not installed" if sync_playwright is None else f"{CHROMIUM} is missing"
    if os.environ.get("CI"):
        raise RuntimeError(f"browser tests cannot run: {why} (`make test` installs it)")
    pytest.skip(f"{why}; run `make test` (it installs chromium and playwright)", allow_module_level=True)


# ---------------------------------------------------------------- HTTP
def get(url: str, timeout: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body = r.read()
        json_body = r.headers.get("content-type", "").split(";")[0] == "application/json"
        return json.loads(body) if json_body else body.decode()


def post(url: str, body: dict, timeout: float = 60.0):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def task_records(server: str, task: str, n: int) -> list[dict]:
    lines = get(f"{server}/api/tasks/{task}/pairs?format=jsonl").splitlines()
    return [json.loads(line) for line in lines[:n]]


def finished_run(server: str, model: str, records: list[dict], filename: str = "pairs.jsonl", **settings) -> dict:
    """Upload `records` and run attribution through the API (no page): the run once it is done."""
    ds = post(f"{server}/api/datasets", {"model": model, "pairs": records, "filename": filename})
    run = post(f"{server}/api/runs", {"model": model, "dataset_id": ds["id"], "batch_size": 16, **settings})
    deadline = time.monotonic() + 120
    while run["status"] not in ("done", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"run {run['id']} still {run['status']}"
        time.sleep(0.2)
        run = get(f"{server}/api/runs/{run['id']}")
    assert run["status"] == "done", run
    return run


# ---------------------------------------------------------------- fixtures
_server: dict = {}
CURVE_POINTS = 8  # faithfulness-curve points per run: enough for the chart, a third of the default's time


def _start_server(data: Path) -> str:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EDGEWISE_DATA": str(data), "EDGEWISE_DEVICE": "cpu",
           "EDGEWISE_CURVE_POINTS": str(CURVE_POINTS)}
    env.pop("EDGEWISE_TOKEN", None)
    exe = Path(sys.executable).with_name("edgewise")
    cmd = [str(exe) if exe.exists() else shutil.which("edgewise") or "edgewise",
           "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(data)]
    log = open(data / "server.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            get(base + "/api/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"edgewise serve did not start:\n{(data / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)
    atexit.register(lambda: (stop_process(proc), log.close()))
    return base


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if "base" not in _server:
        _server["base"] = _start_server(tmp_path_factory.mktemp("edgewise-data"))
    return _server["base"]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    # every Content-Security-Policy violation (the server sends one: no inline script, no eval) is recorded
    context.add_init_script("""window.__csp = []; document.addEventListener('securitypolicyviolation',
        (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`));""")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: print(f"console.{m.type}: {m.text}"))  # shown when a test fails
    pg.set_default_timeout(30_000)
    yield pg
    violations = []
    for p in context.pages:
        try:
            violations += p.evaluate("() => window.__csp || []")
        except Exception:  # noqa: BLE001 - a page that navigated away or closed: nothing to read
            pass
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
    assert not violations, f"Content-Security-Policy violations: {violations}"


# ---------------------------------------------------------------- reading the page
def shown_count(page) -> int:
    text = page.locator("#edge-count").inner_text()
    m = re.fullmatch(r"(\d+) edges? shown", text)
    assert m, f"edge count reads {text!r}"
    assert (m.group(1) == "1") == text.startswith("1 edge "), f"{text!r}: singular and plural mixed up"
    return int(m.group(1))


def drawn(page) -> list[dict]:
    """The edges cytoscape holds right now (known-circuit ghosts excluded), straight from the instance."""
    return page.evaluate("window.__edgewise.cy.edges().not('.ghost').map(e => ({name: e.id(), score: e.data('score')}))")


def wait_view(page, run_id: str | None = None):
    cond = "window.__edgewise && window.__edgewise.ready && window.__edgewise.cy.edges().length > 0"
    if run_id:
        cond += f" && window.__edgewise.runId === {json.dumps(run_id)}"
    page.wait_for_function(f"() => {cond}", timeout=90_000)


def check_view(page, server) -> list[str]:
    """The count text, the drawn edges, the threshold and the API's ranking agree; returns the drawn names."""
    n = shown_count(page)
    edges = drawn(page)
    assert len(edges) == n > 0
    threshold = page.evaluate("window.__edgewise.threshold")
    assert all(abs(e["score"]) >= threshold for e in edges), "a drawn edge is below the threshold"
    run_id = page.evaluate("window.__edgewise.runId")
    top = get(f"{server}/api/runs/{run_id}/edges?top_k={n}")["edges"]
    assert {e["name"] for e in edges} == {e["name"] for e in top}, "drawn edges are not the top-k of the run"
    rest = get(f"{server}/api/runs/{run_id}/edges?top_k={n + 1}")["edges"][n:]
    assert all(abs(e["score"]) <= threshold for e in rest), "an edge above the threshold is missing"
    return sorted(e["name"] for e in edges)


def node_screen_pos(page, name: str) -> tuple[float, float]:
    box = page.locator("#graph").bounding_box()
    pos = page.evaluate(f"window.__edgewise.cy.getElementById({json.dumps(name)}).renderedPosition()")
    return box["x"] + pos["x"], box["y"] + pos["y"]


def click_node(page, name: str):
    page.mouse.click(*node_screen_pos(page, name))


def edge_ends(name: str) -> tuple[str, str]:
    src, dst = re.match(r"(.+)->(.+?)(?:<[qkv]>)?$", name).groups()
    return src, dst
