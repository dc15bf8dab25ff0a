"""The second wave's page in a real browser, each part checked against the API or the engine: the
graph drawn at `scored` while the curve still computes and the chart filling in point by point; MIB's
CPR/CMD beside the chart (against ew.mib_scores); the Model select grouped by source and the Dtype
choice reaching the run; the "Prompt pairs" table (against ew.evaluate on one pair alone); rename,
delete, cancel and paging of past runs (against the API); the connected export (the server's file);
and no Content-Security-Policy violation anywhere (the page fixture checks every test)."""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from browser_support import (N_PAIRS, TASK, browser, drawn, finished_run, get, page, server,  # noqa: F401
                             task_records, wait_view)
from playwright.sync_api import expect

import edgewise as ew

SHOTS = Path("/tmp")  # screenshots of the main views, to look at (not compared)


def request(method: str, url: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, (json.loads(r.read() or b"null") if r.status != 204 else None)


def wait_done(server, run_id, timeout=120.0) -> dict:
    deadline = time.monotonic() + timeout
    while (run := get(f"{server}/api/runs/{run_id}"))["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
        time.sleep(0.1)
    assert run["status"] == "done", run
    return run


def scores_in_graph_order(server, run_id, graph) -> torch.Tensor:
    by_name = {e["name"]: e["score"] for e in get(f"{server}/api/runs/{run_id}/edges")["edges"]}
    return torch.tensor([by_name[n] for n in graph.edge_names], dtype=torch.float64)


def test_graph_at_scored_chart_fills_in_mib_beside_it_models_grouped_dtype_reaches_the_run(page, server):
    resp = page.goto(server)
    assert "script-src 'self'" in resp.headers["content-security-policy"]  # the page runs under the CSP
    page.wait_for_function("() => window.__edgewise && window.__edgewise.ready")

    # the Model select is grouped by where models come from; each model sits in its source's group
    models = get(f"{server}/api/models")
    labels = {"zoo": "Bundled", "local": "Local checkpoints", "cache": "Hugging Face cache", "hub": "Hugging Face hub (download)"}
    groups = page.evaluate("""() => [...document.querySelectorAll('#model optgroup')].map(g =>
        [g.label, [...g.querySelectorAll('option')].map(o => [o.value, o.textContent])])""")
    assert [g[0] for g in groups] == [labels.get(s, s) for s in dict.fromkeys(
        sorted((m["source"] for m in models), key=lambda s: list(labels).index(s) if s in labels else 9))]
    placed = {value: (label, text) for label, opts in groups for value, text in opts}
    for m in models:
        label, text = placed[m["name"]]
        assert label == labels.get(m["source"], m["source"])
        assert ("download needed" in text) == bool(m["download_needed"])

    # the whole bundled task (200 pairs): its curve and MIB points take seconds after the scores
    page.get_by_label("Example task").select_option(TASK)
    page.get_by_role("button", name="Load example").click()
    expect(page.locator("#dataset-status")).to_contain_text("pairs ready")
    model_info = next(m for m in models if m["name"] == TASK)
    dtypes = page.evaluate("() => [...document.getElementById('dtype').options].map(o => o.value)")
    assert dtypes == model_info["dtypes"] and dtypes[0] == "float32"  # float32 only: this server computes on a CPU
    page.get_by_label("Dtype").select_option(dtypes[-1])
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/runs")) as posted:
        page.get_by_role("button", name="Run attribution").click()
    assert posted.value.post_data_json["dtype"] == dtypes[-1]  # the choice is sent, not left to the default

    wait_view(page)
    first = page.evaluate("window.__edgewise.firstDraw")
    assert first["status"] == "running", "the graph was drawn at `scored`, before the run was done"
    run_id = first["run"]
    expect(page.get_by_role("progressbar")).to_be_visible()  # still at work: the curve and MIB's points
    expect(page.locator("#run-status")).to_contain_text("Scores ready")
    run = wait_done(server, run_id)
    assert run["dtype"] == dtypes[-1]
    expect(page.locator("#run-title")).to_contain_text(f"dtype {dtypes[-1]}")
    api_curve = [p["k"] for p in get(f"{server}/api/runs/{run_id}/curve")["points"] if p["k"] > 0]  # log axis: no 0
    page.wait_for_function(f"() => window.__edgewise.curve.length === {len(api_curve)}")
    assert page.evaluate("document.getElementById('chart').data[0].x") == api_curve
    # the chart filled in as the points came: one more after each `curve` event, up to the whole curve
    log = page.evaluate("window.__edgewise.curveLog")
    assert len(set(log)) > 1 and all(0 <= b - a <= 1 for a, b in zip(log, log[1:])) and log[-1] == len(api_curve), log
    expect(page.get_by_role("progressbar")).to_be_hidden()

    # CPR and CMD beside the chart, with an explanation on hover (their values: the next test)
    mib = page.get_by_label("MIB scores")
    expect(mib).to_be_visible()
    assert "CPR" in mib.get_attribute("title") and "CMD" in mib.get_attribute("title")
    got = get(f"{server}/api/runs/{run_id}/mib")
    assert page.locator("#mib-cpr").inner_text() == f"{got['cpr']:.3f}"
    assert page.locator("#mib-cmd").inner_text() == f"{got['cmd']:.3f}"
    page.screenshot(path=str(SHOTS / "edgewise-live-1400.png"))


def test_prompt_pairs_table_equals_evaluate_on_each_pair_and_follows_the_slider_mib_equals_the_engines(page, server):
    records = task_records(server, TASK, N_PAIRS)
    run = finished_run(server, TASK, records, f"{TASK}.jsonl", method="eap", metric="logit_diff")
    page.goto(f"{server}/?run={run['id']}&k=20")
    wait_view(page, run["id"])
    # a finished run opened from its link: the chart draws its whole stored curve
    api_curve = [p["k"] for p in get(f"{server}/api/runs/{run['id']}/curve")["points"] if p["k"] > 0]
    page.wait_for_function(f"() => window.__edgewise.curve.length === {len(api_curve)}")
    assert page.evaluate("document.getElementById('chart').data[0].x") == api_curve
    expect(page.locator("#chart-note")).to_have_text(f"{len(api_curve)} points")
    table = page.get_by_role("table", name="Prompt pairs")
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(N_PAIRS)
    expect(page.locator("#pairs-note")).to_contain_text("circuit of 20 edges")

    def read() -> list[dict]:
        return page.evaluate("""() => [...document.querySelectorAll('#pairs-body tr')].map(tr => {
            const v = (c) => tr.querySelector(c).dataset.value;
            return {index: +tr.dataset.index, circuit: +v('td.circuit'), faith: v('td.norm') === '' ? null : +v('td.norm'),
                    tokens: [...tr.querySelectorAll('td.prompt .tok')].length,
                    changed: [...tr.querySelectorAll('td.prompt .tok.diff')].length}; })""")

    shown = read()
    api = get(f"{server}/api/runs/{run['id']}/pairs?top_k=20")
    assert [r["index"] for r in shown] == [p["index"] for p in api["pairs"]]
    faiths = [r["faith"] for r in shown]
    assert faiths == sorted(faiths), "worst first"
    model = ew.load_model(TASK)
    names = [e["name"] for e in get(f"{server}/api/runs/{run['id']}/edges?top_k=20")["edges"]]
    for r in (shown[0], shown[-1]):  # the worst and the best pair, each evaluated alone
        alone = ew.PromptPairs.from_records(model, [records[r["index"]]])
        want = ew.evaluate(model, alone, names, metric="logit_diff", batch_size=1)
        assert r["circuit"] == pytest.approx(want.metric_circuit, abs=1e-4)
        assert r["faith"] == pytest.approx(want.normalized, abs=1e-4)
        ids = alone.clean[0]
        assert r["tokens"] == len(ids)  # one chip per token
        assert r["changed"] == sum(a != b for a, b in zip(ids, alone.corrupted[0])) > 0

    # MIB's CPR and CMD beside the chart: the engine's, on the run's pairs and scores
    pairs = ew.PromptPairs.from_records(model, records)
    want = ew.mib_scores(model, pairs, scores_in_graph_order(server, run["id"], ew.Graph.from_model(model)),
                         metric="logit_diff", ablation=run["ablation"], batch_size=run["batch_size"])
    got = get(f"{server}/api/runs/{run['id']}/mib")
    assert got["cpr"] == pytest.approx(want["cpr"], rel=1e-5, abs=1e-6)
    assert got["cmd"] == pytest.approx(want["cmd"], rel=1e-5, abs=1e-6)
    assert float(page.locator("#mib-cpr").inner_text()) == pytest.approx(want["cpr"], abs=6e-4)
    assert float(page.locator("#mib-cmd").inner_text()) == pytest.approx(want["cmd"], abs=6e-4)

    # the slider released elsewhere: the table follows (the circuit of the new k)
    page.get_by_label("Edge threshold").fill("300")
    k = page.evaluate("window.__edgewise.k")
    assert k != 20
    expect(page.locator("#pairs-note")).to_contain_text(f"circuit of {k} edge")
    again = get(f"{server}/api/runs/{run['id']}/pairs?top_k={k}")
    page.wait_for_function(f"() => document.querySelector('#pairs-body tr').dataset.index === '{again['pairs'][0]['index']}'")
    assert [r["circuit"] for r in read()] == pytest.approx([p["metric_circuit"] for p in again["pairs"]], abs=1e-9)
    page.locator("#pairs-card").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "edgewise-pairs-1400.png"))
    page.set_viewport_size({"width": 1024, "height": 700})
    page.screenshot(path=str(SHOTS / "edgewise-pairs-1024.png"))


def test_connected_export_is_the_servers_and_keeps_the_url(page, server):
    run = finished_run(server, TASK, task_records(server, TASK, N_PAIRS), f"{TASK}.jsonl", method="eap", metric="logit_diff")
    page.goto(f"{server}/?run={run['id']}&k=40&connected=1")
    wait_view(page, run["id"])
    expect(page.get_by_label("Selection rule")).to_have_value("top_k+connected")
    names = {e["name"] for e in drawn(page)}
    server_names = {e["name"] for e in get(f"{server}/api/runs/{run['id']}/edges?top_k=40&connected=true")["edges"]}
    assert names == server_names and 0 < len(names) < 40, "the page's prune is the server's (and prunes something)"
    url = page.url
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export JSON").click()
    exported = json.loads(Path(dl.value.path()).read_text())
    file = get(f"{server}/api/runs/{run['id']}/circuit?top_k=40&connected=true")
    assert {n for n, e in exported["edges"].items() if e["in_graph"]} == names
    assert exported["selection"] == file["selection"] == {"top_k": 40, "connected": True}
    assert {n: e["in_graph"] for n, e in exported["edges"].items()} == {n: e["in_graph"] for n, e in file["edges"].items()}
    assert page.url == url and "connected=1" in url


def test_past_runs_rename_delete_cancel_and_pages(page, server):
    # enough runs for two pages (imports are instant): a 1-layer EAP-IG file, 22 times
    g = ew.Graph(ew.GraphConfig(1, 2))
    file = {"cfg": {"n_layers": 1, "n_heads": 2, "d_model": 8, "parallel_attn_mlp": False},
            "nodes": {n: {"in_graph": True} for n in g.node_names},
            "edges": {n: {"score": 1.0 / (i + 1), "in_graph": i < 3} for i, n in enumerate(g.edge_names)}}
    ids = [request("POST", f"{server}/api/circuits", file)[1]["id"] for _ in range(22)]
    page.goto(server)
    page.wait_for_function("() => window.__edgewise && window.__edgewise.ready")
    total = int(urllib.request.urlopen(f"{server}/api/runs?limit=1").headers["X-Total-Count"])
    runs = page.get_by_role("list", name="Past runs")
    expect(page.locator("#runs-range")).to_have_text(f"1–20 of {total}")
    expect(runs.locator(":scope > li")).to_have_count(20)
    page.get_by_role("button", name="Older ›").click()
    expect(page.locator("#runs-range")).to_have_text(re.compile(rf"^21–\d+ of {total}$"))
    older = [e for e in runs.locator(":scope > li").evaluate_all("els => els.map(e => e.dataset.run)")]
    assert older == [r["id"] for r in get(f"{server}/api/runs?limit=20&offset=20")]
    page.get_by_role("button", name="‹ Newer").click()
    expect(page.locator("#runs-range")).to_have_text(f"1–20 of {total}")

    # rename the newest import: the API has the name; the list shows it
    newest = ids[-1]
    page.get_by_role("button", name=f"Rename run {newest}").click()
    page.get_by_label(f"Name of run {newest}").fill("  IOI heads, first try  ")
    page.get_by_label(f"Name of run {newest}").press("Enter")
    expect(runs.locator(f"li[data-run='{newest}'] .title")).to_have_text("IOI heads, first try")
    assert get(f"{server}/api/runs/{newest}")["name"] == "IOI heads, first try"

    # delete it (open first: the view leaves it): a second click confirms; the API no longer has it
    runs.locator(f"li[data-run='{newest}'] button.open").click()
    wait_view(page, newest)
    page.get_by_role("button", name=f"Delete run {newest}").click()
    assert get(f"{server}/api/runs/{newest}")["id"] == newest  # one click only asks
    page.get_by_role("button", name=f"Confirm delete run {newest}").click()
    expect(runs.locator(f"li[data-run='{newest}']")).to_have_count(0)
    with pytest.raises(urllib.error.HTTPError) as gone:
        get(f"{server}/api/runs/{newest}")
    assert gone.value.code == 404
    expect(page.locator("#empty-state")).to_be_visible()
    assert page.evaluate("window.__edgewise.runId") is None and "run=" not in page.url

    # a running run offers Cancel, not Delete (the API refuses to delete it: 409); once cancelled, Delete
    ds = request("POST", f"{server}/api/datasets", {"model": TASK, "pairs": task_records(server, TASK, 200)})[1]
    slow = request("POST", f"{server}/api/runs", {"model": TASK, "dataset_id": ds["id"], "method": "exact"})[1]
    page.reload()
    expect(page.get_by_role("button", name=f"Cancel run {slow['id']}")).to_be_visible()
    expect(page.get_by_role("button", name=f"Delete run {slow['id']}")).to_have_count(0)
    with pytest.raises(urllib.error.HTTPError) as busy:
        request("DELETE", f"{server}/api/runs/{slow['id']}")
    assert busy.value.code == 409
    page.get_by_role("button", name=f"Cancel run {slow['id']}").click()
    deadline = time.monotonic() + 60
    while get(f"{server}/api/runs/{slow['id']}")["status"] != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    page.reload()
    expect(page.get_by_role("button", name=f"Delete run {slow['id']}")).to_be_visible()
