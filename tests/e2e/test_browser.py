"""The page in a real browser: Debian's chromium driven by Playwright, against `edgewise serve` on a
free port with its own data directory. One server for the module; each test opens its own page.

Skipped only when chromium (or Playwright) is missing outside CI; `make test` installs both, and in
CI (CI set) a missing browser is a failure, not a skip.
"""
from __future__ import annotations

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
# a bundled model and task: offline, deterministic, with real (non-zero) scores; the run uses the first
# N_PAIRS pairs (one batch: seconds on a CPU, where all 200 pairs and their faithfulness curve take minutes)
TASK = "toy-ioi"
N_PAIRS = 16
SCREENSHOT_COPY = Path("/tmp/edgewise-screenshot.png")

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - decided below
    sync_playwright = None

if sync_playwright is None or not Path(CHROMIUM).exists():
    why = "playwright is not installed" if sync_playwright is None else f"{CHROMIUM} is missing"
    if os.environ.get("CI"):
        raise RuntimeError(f"browser tests cannot run: {why} (`make test` installs it)")
    pytest.skip(f"{why}; run `make test` (it installs chromium and playwright)", allow_module_level=True)


# ---------------------------------------------------------------- server and browser
def get(url: str, timeout: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body = r.read()
        json_body = r.headers.get("content-type", "").split(";")[0] == "application/json"
        return json.loads(body) if json_body else body.decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("edgewise-data")
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EDGEWISE_DATA": str(data), "EDGEWISE_DEVICE": "cpu"}
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
    yield base
    stop_process(proc)
    log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: print(f"console.{m.type}: {m.text}"))  # shown when a test fails
    pg.set_default_timeout(30_000)
    yield pg
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture(scope="module")
def task(server) -> dict:
    """The task as GET /api/tasks lists it, with its model's n_edges."""
    info = next(t for t in get(f"{server}/api/tasks") if t["name"] == TASK)
    model = next(m for m in get(f"{server}/api/models") if m["name"] == info["model"])
    return {**info, "n_edges": model["n_edges"], "cfg": {"n_layers": model["n_layers"], "n_heads": model["n_heads"]}}


@pytest.fixture(scope="module")
def pairs_csv(server, tmp_path_factory) -> Path:
    """The bundled task's pairs as the API hands them out (the first N_PAIRS): the file a user would upload."""
    path = tmp_path_factory.mktemp("pairs") / f"{TASK}.csv"
    lines = get(f"{server}/api/tasks/{TASK}/pairs?format=csv").splitlines()
    path.write_text("\n".join(lines[:N_PAIRS + 1]) + "\n")
    return path


# ---------------------------------------------------------------- helpers
def shown_count(page) -> int:
    text = page.locator("#edge-count").inner_text()
    m = re.fullmatch(r"(\d+) edges shown", text)
    assert m, f"edge count reads {text!r}"
    return int(m.group(1))


def drawn(page) -> list[dict]:
    """The edges cytoscape holds right now, straight from the instance."""
    return page.evaluate("window.__edgewise.cy.edges().map(e => ({name: e.id(), score: e.data('score')}))")


def wait_view(page):
    # an arrow function: under the page's CSP (no 'unsafe-eval') Playwright cannot poll a bare expression
    page.wait_for_function("() => window.__edgewise && window.__edgewise.ready && window.__edgewise.cy.edges().length > 0",
                           timeout=90_000)


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


def click_node(page, name: str):
    box = page.locator("#graph").bounding_box()
    pos = page.evaluate(f"window.__edgewise.cy.getElementById({json.dumps(name)}).renderedPosition()")
    page.mouse.click(box["x"] + pos["x"], box["y"] + pos["y"])


# ---------------------------------------------------------------- tests
def test_upload_run_explore_export_permalink(page, server, task, pairs_csv, tmp_path):
    page.goto(server)
    page.get_by_label("Model", exact=True).select_option(task["model"])
    page.get_by_label("Prompt pairs file").set_input_files(pairs_csv)
    expect(page.locator("#dataset-status")).to_contain_text(f"{N_PAIRS} pairs ready")
    page.get_by_label("Method", exact=True).select_option("eap")
    page.get_by_label("Metric", exact=True).select_option(task["metric"])

    # the progress bar shows while the run works (it may be brief: record that it appeared)
    page.evaluate("""() => { const el = document.getElementById('run-progress');
        new MutationObserver(() => { if (!el.hidden) window.__sawProgress = true; })
          .observe(el, {attributes: true}); }""")
    page.get_by_role("button", name="Run attribution").click()
    wait_view(page)
    assert page.evaluate("window.__sawProgress === true"), "no progressbar while the run worked"
    expect(page.get_by_role("progressbar")).to_be_hidden()
    expect(page.get_by_text(re.compile(r"^\d+ edges shown$"))).to_be_visible()
    n_total = page.evaluate("window.__edgewise.nTotal")
    assert n_total == task["n_edges"]

    # the slider: any position, the ends, and a keyboard step
    slider = page.get_by_label("Edge threshold")
    for pos, expected in (("600", None), ("1000", min(n_total, 2000)), ("0", 1), ("350", None)):
        slider.fill(pos)
        k = page.evaluate("window.__edgewise.k")
        assert expected is None or k == expected
        check_view(page, server)
        assert shown_count(page) == k
    k = page.evaluate("window.__edgewise.k")
    slider.press("ArrowRight")
    assert shown_count(page) == k + 1
    check_view(page, server)
    slider.fill("700")
    names = check_view(page, server)
    assert page.evaluate("window.__edgewise.threshold") > 0  # a real threshold: the scores are not all 0
    # releasing the slider asks the server for the faithfulness of exactly this circuit
    expect(page.locator("#faithfulness")).to_have_text(re.compile(r"^-?\d+\.\d{3}$"))

    # nodes with no drawn edge fade
    idle = page.evaluate("window.__edgewise.cy.nodes('.idle').map(n => n.id())")
    touched = {p for e in names for p in re.match(r"(.+)->(.+?)(<[qkv]>)?$", e).groups()[:2]}
    assert set(idle) == {n for n in page.evaluate("window.__edgewise.cy.nodes().map(n => n.id())")} - touched

    # a node's panel ranks its incoming and outgoing edges (a head the strongest edges touch)
    node = next(p for e in names for p in re.match(r"(.+)->(.+?)(?:<[qkv]>)?$", e).groups() if p.startswith("a"))
    click_node(page, node)
    panel = page.get_by_role("complementary", name="Node details")
    expect(panel).to_be_visible()
    expect(panel.locator("h3")).to_have_text(node)
    expect(panel).to_contain_text("Incoming")
    expect(panel).to_contain_text("Outgoing")
    ranked = [float(x) for x in panel.locator(".edge-list").first.locator(".score").all_inner_texts()]
    assert ranked and ranked == sorted(ranked, key=abs, reverse=True)
    assert f"node={node}" in page.url

    # Export JSON holds exactly the drawn edges
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export JSON").click()
    exported = json.loads(Path(dl.value.path()).read_text())
    assert exported["format"] == "edgewise.circuit/v1"
    kept = sorted(n for n, e in exported["edges"].items() if e["in_graph"])
    assert kept == names and len(kept) == shown_count(page)
    assert exported["model"] == task["model"] and exported["selection"] == {"top_k": len(names)}
    assert len(exported["edges"]) == n_total
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export PNG").click()
    assert dl.value.suggested_filename.endswith(".png")
    assert Path(dl.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    shot = tmp_path / "explorer.png"
    page.screenshot(path=str(shot))
    shutil.copy(shot, SCREENSHOT_COPY)

    # the permalink reopens the same view
    url = page.url
    assert re.search(r"[?&]run=\w+", url) and f"k={len(names)}" in url
    page2 = page.context.new_page()
    page2.goto(url)
    wait_view(page2)
    assert check_view(page2, server) == names
    assert page2.locator("#edge-count").inner_text() == f"{len(names)} edges shown"
    expect(page2.get_by_role("complementary", name="Node details").locator("h3")).to_have_text(node)
    page2.close()

    # the run is listed and reopens from the list
    page.goto(server)
    page.get_by_role("list", name="Past runs").get_by_role("button").first.click()
    wait_view(page)
    assert page.evaluate("window.__edgewise.runId") in url


def test_validation_errors_name_row_and_field(page, server, task, tmp_path):
    records = [json.loads(line) for line in get(f"{server}/api/tasks/{TASK}/pairs?format=jsonl").splitlines()[:3]]
    # row 2: a corrupted prompt one token shorter than its clean prompt
    c = records[1]["corrupted"]
    records[1]["corrupted"] = c[:-1] if isinstance(c, list) else c.rsplit(" ", 1)[0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in records))
    page.goto(server)
    page.get_by_label("Model", exact=True).select_option(task["model"])
    page.get_by_label("Prompt pairs file").set_input_files(bad)
    errors = page.get_by_role("alert").filter(has_text="row")
    expect(errors).to_contain_text("row 2")
    expect(errors).to_contain_text('"corrupted"')
    # no run starts from a rejected file
    page.get_by_role("button", name="Run attribution").click()
    expect(errors).to_contain_text("row 2")
    assert page.evaluate("window.__edgewise.runId") is None


def test_example_cancel_and_import_circuit(page, server, task, tmp_path):
    """First visit with no file: one click loads a bundled task; a run cancels. An imported circuit
    JSON (no run, no weights) opens as a view whose top edges are the file's."""
    page.goto(server)
    page.get_by_label("Example task").select_option(TASK)
    page.get_by_role("button", name="Load example").click()
    expect(page.locator("#dataset-status")).to_contain_text(f"{task['n_pairs']} pairs ready")
    expect(page.get_by_label("Model", exact=True)).to_have_value(task["model"])
    expect(page.get_by_label("Metric", exact=True)).to_have_value(task["metric"])
    # start, then cancel while it attributes (`exact` patches each of the 262 edges: tens of seconds);
    # a run cancelled after its scores are stored would end `done` instead, keeping them (docs/api.md)
    page.get_by_label("Method", exact=True).select_option("exact")
    page.get_by_role("button", name="Run attribution").click()
    expect(page.get_by_role("progressbar")).to_be_visible()
    expect(page.get_by_role("button", name="Run attribution")).to_be_disabled()
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("progressbar")).to_be_hidden(timeout=60_000)
    expect(page.get_by_role("list", name="Past runs").get_by_role("button").first).to_contain_text("cancelled")
    expect(page.get_by_role("button", name="Run attribution")).to_be_enabled()

    # a circuit of another shape (3 layers × 4 heads, MLPs): scores 1/(rank+1), alternating sign
    cfg = {"n_layers": 3, "n_heads": 4, "d_model": 32, "parallel_attn_mlp": False}
    src = ["input"] + [f"a{L}.h{h}" for L in range(3) for h in range(4)] + [f"m{L}" for L in range(3)]
    edges = []
    for L in range(3):
        before = ["input"] + [f"a{l}.h{h}" for l in range(L) for h in range(4)] + [f"m{l}" for l in range(L)]
        edges += [f"{s}->a{L}.h{h}<{q}>" for s in before for h in range(4) for q in "qkv"]
        edges += [f"{s}->m{L}" for s in before + [f"a{L}.h{h}" for h in range(4)]]
    edges += [f"{s}->logits" for s in src]
    circuit = {"format": "edgewise.circuit/v1", "cfg": cfg, "model": "imported-test",
               "nodes": {n: {"in_graph": False} for n in src + ["logits"]},
               "edges": {e: {"score": (-1) ** i / (i + 1), "in_graph": i < 10} for i, e in enumerate(edges)}}
    path = tmp_path / "circuit.json"
    path.write_text(json.dumps(circuit))
    page.locator("#import-circuit").set_input_files(path)
    wait_view(page)
    assert page.evaluate("window.__edgewise.nTotal") == len(edges)
    page.get_by_label("Edge threshold").fill("700")
    k = shown_count(page)
    assert sorted(e["name"] for e in drawn(page)) == sorted(edges[:k])
    check_view(page, server)
    # every node of the shape is placed, heads of a layer in one column
    xs = page.evaluate("window.__edgewise.cy.nodes().map(n => [n.id(), n.position('x')])")
    assert len(xs) == len(src) + 1
    col = {n: x for n, x in xs}
    assert col["a1.h0"] == col["a1.h3"] and col["input"] < col["a0.h0"] < col["m0"] < col["a1.h0"] < col["logits"]
