"""The page in a real browser, the first session's path: pairs in, run, explore, export, permalink;
bad pairs rejected with every error named; a bundled example run and cancelled; circuits imported
(edgewise and EAP-IG files) showing exactly their own edges. Fixtures: browser_support.py."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from browser_support import (N_PAIRS, TASK, browser, check_view, click_node, drawn, edge_ends, finished_run, get,  # noqa: F401
                             page, server, shown_count, task_records, wait_view)
from playwright.sync_api import expect

from edgewise.graph import Graph, GraphConfig

SCREENSHOT_COPY = Path("/tmp/edgewise-screenshot.png")


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


def test_upload_run_explore_export_permalink(page, server, task, pairs_csv, tmp_path):
    page.goto(server)
    run_button = page.get_by_role("button", name="Run attribution")
    expect(run_button).to_be_disabled()  # no pairs yet, and the page says why
    expect(page.locator("#run-hint")).to_contain_text("No prompt pairs yet")
    page.get_by_label("Model", exact=True).select_option(task["model"])
    page.get_by_label("Prompt pairs file").set_input_files(pairs_csv)
    expect(page.locator("#dataset-status")).to_contain_text(f"{N_PAIRS} pairs ready")
    page.get_by_label("Method", exact=True).select_option("relp")  # the page offers RelP and says what it is
    expect(page.locator("#method-info")).to_contain_text("Query and key edges score 0")
    expect(page.get_by_label("IG steps")).to_be_disabled()
    page.get_by_label("Method", exact=True).select_option("eap")
    page.get_by_label("Metric", exact=True).select_option(task["metric"])
    page.get_by_label("Ablation").select_option("resample")
    expect(page.get_by_label("IG steps")).to_be_disabled()  # EAP takes one gradient
    page.get_by_label("Batch size").fill("8")

    # the progress bar shows while the run works (it may be brief: record that it appeared)
    page.evaluate("""() => { const el = document.getElementById('run-progress');
        new MutationObserver(() => { if (!el.hidden) window.__sawProgress = true; })
          .observe(el, {attributes: true}); }""")
    run_button.click()
    wait_view(page)
    assert page.evaluate("window.__sawProgress === true"), "no progressbar while the run worked"
    expect(page.get_by_role("progressbar")).to_be_hidden()
    expect(page.get_by_text(re.compile(r"^\d+ edges? shown$"))).to_be_visible()
    n_total = page.evaluate("window.__edgewise.nTotal")
    assert n_total == task["n_edges"]
    run = get(f"{server}/api/runs/{page.evaluate('window.__edgewise.runId')}")
    assert (run["batch_size"], run["ablation"], run["method"]) == (8, "resample", "eap"), "the form's settings reach the run"
    # the title and the past-runs entry say what ran on what
    expect(page.locator("#run-title")).to_contain_text(f"{TASK}.csv ({N_PAIRS} pairs)")
    expect(page.locator("#run-title")).to_contain_text("resample")
    expect(page.get_by_role("list", name="Past runs").get_by_role("button").first).to_contain_text(f"resample · {TASK}.csv")

    # the slider: any position, the ends (one edge reads "1 edge shown"), and a keyboard step
    slider = page.get_by_label("Edge threshold")
    for pos, expected in (("600", None), ("1000", min(n_total, 2000)), ("0", 1), ("350", None)):
        slider.fill(pos)
        k = page.evaluate("window.__edgewise.k")
        assert expected is None or k == expected
        check_view(page, server)
        assert shown_count(page) == k
        # the exact-faithfulness dot is this k's or none: never the last position's
        assert page.evaluate("document.getElementById('chart').data[1].x") in ([], [k])
    k = page.evaluate("window.__edgewise.k")
    slider.press("ArrowRight")
    assert shown_count(page) == k + 1
    check_view(page, server)
    slider.fill("700")
    names = check_view(page, server)
    assert page.evaluate("window.__edgewise.threshold") > 0  # a real threshold: the scores are not all 0
    # releasing the slider asks the server for the faithfulness of exactly this circuit
    expect(page.locator("#faithfulness")).to_have_text(re.compile(r"^-?\d+\.\d{3}$"))
    assert page.locator("#faithfulness").inner_text() != "-0.000"

    # nodes with no drawn edge fade
    idle = page.evaluate("window.__edgewise.cy.nodes('.idle').map(n => n.id())")
    touched = {p for e in names for p in edge_ends(e)}
    assert set(idle) == set(page.evaluate("window.__edgewise.cy.nodes().map(n => n.id())")) - touched

    # a node's panel ranks its incoming and outgoing edges (a head the strongest edges touch)
    node = next(p for e in names for p in edge_ends(e) if p.startswith("a"))
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

    shot = tmp_path / "explorer.png"
    page.screenshot(path=str(shot))
    shutil.copy(shot, SCREENSHOT_COPY)

    # the permalink reopens the same view, the form set to the run's settings
    url = page.url
    assert re.search(r"[?&]run=\w+", url) and f"k={len(names)}" in url
    page2 = page.context.new_page()
    page2.goto(url)
    wait_view(page2)
    assert check_view(page2, server) == names
    assert page2.locator("#edge-count").inner_text() == f"{len(names)} edges shown"
    expect(page2.get_by_role("complementary", name="Node details").locator("h3")).to_have_text(node)
    expect(page2.get_by_label("Batch size")).to_have_value("8")
    page2.close()

    # the run is listed and reopens from the list; back to "/" empties the view
    page.goto(server)
    page.get_by_role("list", name="Past runs").get_by_role("button").first.click()
    wait_view(page)
    assert page.evaluate("window.__edgewise.runId") in url
    page.go_back()
    expect(page.locator("#empty-state")).to_be_visible()
    assert page.evaluate("window.__edgewise.runId") is None and drawn(page) == []
    expect(page.locator("#run-title")).to_have_text("")


def test_validation_errors_name_row_and_field(page, server, task, tmp_path):
    records = task_records(server, TASK, 3)
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
    # the server names its first error only: the page says so rather than implying it is the only one
    expect(errors).to_contain_text("first error")
    # no run starts from a rejected file, and the page says why
    expect(page.get_by_role("button", name="Run attribution")).to_be_disabled()
    expect(page.locator("#run-hint")).to_contain_text("rejected")

    # the "Paste pairs" placeholder is a valid example; answer == wrong_answer is flagged, row and field
    page.get_by_text("Paste pairs").click()
    box = page.get_by_label("Pasted pairs")
    box.fill(box.get_attribute("placeholder"))
    page.get_by_role("button", name="Check pasted pairs").click()
    expect(page.locator("#dataset-status")).to_contain_text("1 pair ready")
    expect(page.get_by_role("alert", name="Validation errors")).to_be_hidden()
    same = records[0] | {"wrong_answer": records[0]["answer"]}
    box.fill("".join(json.dumps(r) + "\n" for r in [records[2], same]))
    page.get_by_role("button", name="Check pasted pairs").click()
    expect(page.locator("#dataset-status")).to_contain_text("2 pairs ready")
    expect(page.get_by_role("list", name="Warnings about the pairs")).to_contain_text('row 2, field "wrong_answer": same as answer')
    expect(page.get_by_role("button", name="Run attribution")).to_be_enabled()
    assert page.evaluate("window.__edgewise.runId") is None


def eap_ig_file(cfg: dict, scores: dict[str, float], in_graph: set[str]) -> dict:
    """A circuit as EAP-IG's Graph.to_json writes it: cfg without attn_only, every node and edge."""
    nodes = {n for e in scores for n in edge_ends(e)}
    return {"cfg": cfg, "nodes": {n: {"in_graph": any(n in edge_ends(e) for e in in_graph)} for n in sorted(nodes)},
            "edges": {e: {"score": s, "in_graph": e in in_graph} for e, s in scores.items()}}


def test_example_cancel_and_import_circuit(page, server, task, tmp_path):
    """First visit: one click loads a bundled task; a run cancels. Imported circuits show exactly
    their own in_graph edges: an EAP-IG file marking ranks 1–8, 16 and 41, a GPT-2-shaped file marking
    one edge far down the ranking, and an edgewise export (its faithfulness drawn without a curve)."""
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
    page.get_by_role("button", name="Cancel", exact=True).click()
    expect(page.get_by_role("progressbar")).to_be_hidden(timeout=60_000)
    expect(page.get_by_role("list", name="Past runs").get_by_role("button").first).to_contain_text("cancelled")
    expect(page.get_by_role("button", name="Run attribution")).to_be_enabled()

    # an EAP-IG file of another shape (3 layers × 4 heads, MLPs): scores 1/(rank+1), alternating sign
    g = Graph(GraphConfig.from_model({"n_layers": 3, "n_heads": 4, "d_model": 32}))
    edges = list(g.edge_names)
    marked = {edges[i] for i in [*range(8), 15, 40]}
    path = tmp_path / "eap-ig.json"
    path.write_text(json.dumps(eap_ig_file({"n_layers": 3, "n_heads": 4, "d_model": 32, "parallel_attn_mlp": False},
                                           {e: (-1) ** i / (i + 1) for i, e in enumerate(edges)}, marked)))
    page.locator("#import-circuit").set_input_files(path)
    wait_view(page)
    assert page.evaluate("window.__edgewise.nTotal") == len(edges) == g.n_edges
    assert {e["name"] for e in drawn(page)} == marked and shown_count(page) == 10
    expect(page.get_by_label("Selection rule")).to_have_value("own")
    # moving the slider leaves the file's selection for the top k
    page.get_by_label("Edge threshold").fill("700")
    k = shown_count(page)
    assert sorted(e["name"] for e in drawn(page)) == sorted(edges[:k])
    expect(page.get_by_label("Selection rule")).to_have_value("top_k")
    check_view(page, server)
    xs = dict(page.evaluate("window.__edgewise.cy.nodes().map(n => [n.id(), n.position('x')])"))
    assert len(xs) == 1 + 3 * 5 + 1, "every node of the shape is placed, MLPs included"
    assert xs["a1.h0"] == xs["a1.h3"] and xs["input"] < xs["a0.h0"] < xs["m0"] < xs["a1.h0"] < xs["logits"]

    # GPT-2's shape, one edge marked (rank 30,000 of 32,491: outside what the slider loads)
    gpt2 = Graph(GraphConfig.from_model({"n_layers": 12, "n_heads": 12, "d_model": 768}))
    names = list(gpt2.edge_names)
    one = names[30_000]
    path = tmp_path / "gpt2.json"
    path.write_text(json.dumps(eap_ig_file({"n_layers": 12, "n_heads": 12, "d_model": 768, "parallel_attn_mlp": False},
                                           {e: 1 / (i + 1) for i, e in enumerate(names)}, {one})))
    page.locator("#import-circuit").set_input_files(path)
    page.wait_for_function("() => window.__edgewise.nTotal === 32491", timeout=60_000)
    expect(page.locator("#edge-count")).to_have_text("1 edge shown")
    expect(page.locator("#edge-total")).to_have_text("of 32,491")
    assert [e["name"] for e in drawn(page)] == [one]

    # an edgewise export of a run here: the model and pairs are known, so its faithfulness is computed;
    # with no stored curve the chart shows that one point on visible axes, no "no curve" text over it
    run = finished_run(server, task["model"], task_records(server, TASK, N_PAIRS), method="eap", metric=task["metric"])
    exported = get(f"{server}/api/runs/{run['id']}/circuit?top_k=12")
    path = tmp_path / "export.json"
    path.write_text(json.dumps(exported))
    page.locator("#import-circuit").set_input_files(path)
    page.wait_for_function("() => window.__edgewise.nTotal === %d && window.__edgewise.sel.rule === 'own'" % task["n_edges"])
    expect(page.locator("#faithfulness")).to_have_text(re.compile(r"^-?\d+\.\d{3}$"))
    assert {e["name"] for e in drawn(page)} == {n for n, e in exported["edges"].items() if e["in_graph"]}
    page.wait_for_function("() => document.getElementById('chart').data[1].x.length === 1")
    chart = page.evaluate("(() => { const c = document.getElementById('chart'); return {dot: c.data[1].x, notes: c.layout.annotations.map(a => a.text), axis: c.layout.xaxis.visible}; })()")
    assert chart == {"dot": [12], "notes": [], "axis": True}
    expect(page.locator("#chart-note")).to_contain_text("imported circuit")
