"""The explorer's researcher tools in a real browser, each checked against something independent:
compare (edge classes against the API's rankings, Spearman recomputed here), the known-circuit
overlay (AUC against edgewise.evaluate.roc_auc, precision/recall against the task's circuit),
selection rules (the connected prune recomputed as EAP-IG does it), run warnings and settings,
hover, "Find node", the keyboard, and SVG/PNG export. Runs are made through the API (fast)."""
from __future__ import annotations

import json
import re
import struct
import urllib.error
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from api_support import eap_ig_prune
from browser_support import (N_PAIRS, TASK, browser, drawn, edge_ends, finished_run, get, node_screen_pos,  # noqa: F401
                             page, post, server, shown_count, task_records, wait_view)
from playwright.sync_api import expect

import edgewise as ew
from edgewise.evaluate import roc_auc


@pytest.fixture(scope="module")
def runs(server) -> dict:
    """Two runs of toy-ioi on the same pairs: EAP and EAP-IG (3 steps)."""
    records = task_records(server, TASK, N_PAIRS)
    eap = finished_run(server, TASK, records, f"{TASK}.jsonl", method="eap", metric="logit_diff")
    ig = finished_run(server, TASK, records, f"{TASK}.jsonl", method="eap-ig-inputs", metric="logit_diff", ig_steps=3)
    return {"eap": eap, "ig": ig}


def all_scores(server, run_id) -> dict[str, float]:
    return {e["name"]: e["score"] for e in get(f"{server}/api/runs/{run_id}/edges")["edges"]}


def top_names(server, run_id, k) -> set[str]:
    return {e["name"] for e in get(f"{server}/api/runs/{run_id}/edges?top_k={k}")["edges"]}


def avg_ranks(xs: list[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for t in range(i, j + 1):
            r[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a: dict, b: dict) -> float:
    names = sorted(a)
    ra, rb = torch.tensor(avg_ranks([a[n] for n in names])), torch.tensor(avg_ranks([b[n] for n in names]))
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def stat(page, key: str) -> str:
    return page.locator(f"[data-stat={key}]").inner_text()


def test_compare_two_runs(page, server, runs):
    a, b = runs["eap"]["id"], runs["ig"]["id"]
    page.goto(f"{server}/?run={a}&k=40")
    wait_view(page, a)
    page.get_by_label("Compare with").select_option(b)
    page.wait_for_function("() => window.__edgewise.compare !== null")
    assert f"cmp={b}" in page.url
    for position in (None, "446"):  # k = 40, then the slider at about 12 edges
        if position:
            page.get_by_label("Edge threshold").fill(position)
        k = page.evaluate("window.__edgewise.k")
        ta, tb = top_names(server, a, k), top_names(server, b, k)
        want = {"a": len(ta - tb), "both": len(ta & tb), "b": len(tb - ta)}
        page.wait_for_function(f"() => document.querySelector('[data-count=both]').textContent === '{want['both']}'")
        got = {key: int(page.locator(f"[data-count={key}]").inner_text()) for key in want}
        assert got == want, f"k={k}"
        cls = page.evaluate("(() => { const c = {}; window.__edgewise.cy.edges().not('.ghost').forEach(e => { c[e.data('cls')] = (c[e.data('cls')] || 0) + 1; }); return c; })()")
        assert cls == {key: n for key, n in want.items() if n}, "the graph colours the same classes"
        assert {e["name"] for e in drawn(page)} == ta | tb
        assert float(stat(page, "jaccard")) == pytest.approx(len(ta & tb) / len(ta | tb), abs=0.005)
    rho = spearman(all_scores(server, a), all_scores(server, b))
    assert float(stat(page, "spearman")) == pytest.approx(rho, abs=5e-4)
    # the legend switches to the classes; B's curve is overlaid on A's
    expect(page.locator("#legend-compare")).to_be_visible()
    expect(page.locator("#legend-sign")).to_be_hidden()
    curve_b = [p["k"] for p in get(f"{server}/api/runs/{b}/curve")["points"] if p["k"] > 0]  # log axis: no k = 0
    assert page.evaluate("document.getElementById('chart').data[2].x") == curve_b
    # the link keeps the comparison
    page2 = page.context.new_page()
    page2.goto(page.url)
    page2.wait_for_function("() => window.__edgewise && window.__edgewise.compare !== null")
    expect(page2.get_by_label("Compare with")).to_have_value(b)
    page2.close()


def test_known_circuit_overlay_and_selection_rules(page, server):
    task = ew.load_task("toy-induction")
    truth = set(get(f"{server}/api/tasks/toy-induction/circuit")["edges"])
    assert truth == set(task.circuit) and len(truth) == len(task.circuit) > 0
    with pytest.raises(urllib.error.HTTPError) as none:  # not a task here
        get(f"{server}/api/tasks/no-such-task/circuit")
    assert none.value.code == 404
    run = finished_run(server, task.model, task_records(server, "toy-induction", N_PAIRS), method="eap", metric="logit_diff")
    page.goto(f"{server}/?run={run['id']}&k=10")
    wait_view(page, run["id"])
    page.wait_for_function("() => window.__edgewise.truth && window.__edgewise.truth.auc !== null")
    scores = all_scores(server, run["id"])
    names = list(scores)
    _, _, auc = roc_auc(torch.tensor([scores[n] for n in names]), torch.tensor([n in truth for n in names]))
    assert float(stat(page, "auc")) == pytest.approx(auc, abs=5e-4)
    assert page.evaluate("window.__edgewise.truth.auc") == pytest.approx(auc, abs=1e-9)
    shown = top_names(server, run["id"], 10)
    tp = len(shown & truth)
    assert stat(page, "precision") == f"{tp / 10:.2f} ({tp}/10)" and stat(page, "recall") == f"{tp / len(truth):.2f} ({tp}/{len(truth)})"
    ghosts = set(page.evaluate("window.__edgewise.cy.edges('.ghost').map(e => e.id().slice(6))"))
    assert ghosts == truth - shown, "every known edge not shown is drawn as a ghost"
    assert set(page.evaluate("window.__edgewise.cy.edges('.truth').map(e => e.id())")) == shown & truth
    expect(page.locator("#roc-wrap")).to_be_visible()
    page.get_by_label("Known circuit").uncheck()
    expect(page.locator("#roc-wrap")).to_be_hidden()
    assert page.evaluate("window.__edgewise.cy.edges('.ghost, .truth').length") == 0

    # |score| ≥ t, connected only: exactly EAP-IG's prune of the edges above t
    page.get_by_label("Selection rule").select_option("abs+connected")
    pruned_something = False
    for position in range(100, 1001, 25):
        page.get_by_label("Edge threshold").fill(str(position))
        t = page.evaluate("window.__edgewise.sel.t")
        above = {e["name"] for e in get(f"{server}/api/runs/{run['id']}/edges?min_abs_score={t!r}")["edges"]}
        want = eap_ig_prune(above)
        assert {e["name"] for e in drawn(page)} == want and shown_count(page) == len(want), f"t={t}"
        expect(page.locator("#threshold-score")).to_contain_text(f"connected: {len(want)} of {len(above)}")
        pruned_something |= bool(want) and want != above
        if pruned_something:
            break
    assert pruned_something, "at some threshold the prune removes edges and keeps others"
    exact = post(f"{server}/api/runs/{run['id']}/faithfulness", {"edges": sorted(want)})
    expect(page.locator("#faithfulness")).to_have_text(f"{exact['normalized']:.3f}".replace("-0.000", "0.000"))
    assert "rule=abs" in page.url and "connected=1" in page.url
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export JSON").click()
    exported = json.loads(Path(dl.value.path()).read_text())
    assert {n for n, e in exported["edges"].items() if e["in_graph"]} == want
    assert exported["selection"] == {"min_abs_score": t, "connected": True}
    page2 = page.context.new_page()
    page2.goto(page.url)
    wait_view(page2, run["id"])
    assert {e["name"] for e in drawn(page2)} == want
    expect(page2.get_by_label("Selection rule")).to_have_value("abs+connected")
    page2.close()


def test_warnings_and_settings_reach_the_page(page, server, runs):
    kl = finished_run(server, TASK, task_records(server, TASK, 4), "kl.jsonl", method="eap", metric="kl", ablation="mean")
    assert any("zero gradient" in w for w in kl["warnings"])
    page.goto(f"{server}/?run={kl['id']}")
    wait_view(page, kl["id"])
    warnings = page.get_by_role("alert", name="Run warnings")
    expect(warnings).to_contain_text("zero gradient at the clean point")
    expect(page.locator("#run-title")).to_contain_text("mean")
    expect(page.get_by_role("list", name="Past runs").locator("button[aria-current=true] .warn-mark")).to_be_visible()
    # a permalink to the EAP-IG run shows its method and steps in the form, and no warning
    ig = runs["ig"]
    page.goto(f"{server}/?run={ig['id']}")
    wait_view(page, ig["id"])
    expect(page.get_by_label("Method", exact=True)).to_have_value("eap-ig-inputs")
    expect(page.get_by_label("IG steps")).to_have_value("3")
    expect(page.get_by_label("IG steps")).to_be_enabled()
    expect(page.locator("#run-title")).to_contain_text("3 steps")
    expect(warnings).to_be_hidden()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_hover_find_keyboard_and_picture_export(page, server, runs):
    a = runs["eap"]["id"]
    page.goto(f"{server}/?run={a}&k=30")
    wait_view(page, a)
    cy = "window.__edgewise.cy"
    names = {e["name"] for e in drawn(page)}
    node = max({n for e in names for n in edge_ends(e)} - {"input", "logits"},
               key=lambda n: sum(n in edge_ends(e) for e in names))
    # hover a node: its edges highlighted, every other edge dimmed; away: back
    expect(page.locator("#faithfulness")).to_have_text(re.compile(r"^-?\d+\.\d{3}$"))  # the picture states it
    expect(page.locator("#truth-stats")).to_contain_text("AUC")  # the known circuit's line is in the picture too
    svg_before = page.evaluate("window.__edgewise.svg()")
    page.mouse.move(*node_screen_pos(page, node), steps=8)  # a pointer's path: cytoscape fires mouseover on the way in
    page.wait_for_function(f"() => {cy}.edges('.hl').length > 0")
    mine = set(page.evaluate(f"{cy}.getElementById('{node}').connectedEdges().map(e => e.id())"))
    assert set(page.evaluate(f"{cy}.edges('.hl').map(e => e.id())")) == mine
    assert set(page.evaluate(f"{cy}.edges('.dim').not('.ghost').map(e => e.id())")) == names - mine
    # the picture ignores the hover: same SVG (but for its time stamp), PNG drawn from it at 2×
    strip = lambda s: re.sub(r"exported [^<]*", "", s)  # noqa: E731
    assert strip(page.evaluate("window.__edgewise.svg()")) == strip(svg_before)
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export PNG").click()
    w, h = map(int, re.search(r'width="(\d+)" height="(\d+)"', svg_before).groups())
    assert png_size(Path(dl.value.path()).read_bytes()) == (2 * w, 2 * h)
    page.mouse.move(5, 5)
    page.wait_for_function(f"() => {cy}.edges('.hl, .dim').length === 0")

    # Export SVG: valid XML, exactly the drawn edges, the legend and the run's metadata
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export SVG").click()
    root = ET.fromstring(Path(dl.value.path()).read_text())
    assert {p.get("data-edge") for p in root.iter("{http://www.w3.org/2000/svg}path") if p.get("data-edge")} == names
    text = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    n_total = runs["eap"]["n_edges"]
    for want in ("toy-ioi", "method eap", f"30 edges of {n_total}", "score < 0: patching the edge lowers the metric", f"run #{a}"):
        assert want in text, want

    # a node panel row hovered: that edge highlighted
    page.get_by_label("Find node").fill(node)
    page.get_by_label("Find node").press("Enter")
    panel = page.get_by_role("complementary", name="Node details")
    expect(panel.locator("h3")).to_have_text(node)
    pos = page.evaluate(f"{cy}.getElementById('{node}').renderedPosition()")
    size = page.evaluate(f"[{cy}.width(), {cy}.height()]")
    assert abs(pos["x"] - size[0] / 2) < 2 and abs(pos["y"] - size[1] / 2) < 2, "the found node is centred"
    row = panel.locator("li.on").first
    row.hover()
    assert page.evaluate(f"{cy}.edges('.hover').map(e => e.id())") == [row.get_attribute("data-edge")]
    # an edge that is not shown: the page says where it ranks
    hidden = get(f"{server}/api/runs/{a}/edges?top_k=60")["edges"][50]["name"]
    page.get_by_label("Find node").fill(hidden)
    page.get_by_label("Find node").press("Enter")
    expect(page.locator("#toast")).to_contain_text("not shown at this threshold (rank 51")

    # the keyboard: Tab reaches the graph, arrows move a cursor, Enter opens the node, Escape closes
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    page.get_by_role("button", name="Export PNG").focus()
    for _ in range(3):  # the toolbar's last controls (the Known circuit switch where a task ships one), then the graph
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "graph":
            break
    assert page.evaluate("document.activeElement.id") == "graph"
    assert page.evaluate("window.__edgewise.cursor") in ("input", node)
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    cursor = page.evaluate("window.__edgewise.cursor")
    assert re.fullmatch(r"a0\.h\d", cursor) and cursor != "a0.h0"
    expect(page.locator("#graph-live")).to_contain_text(cursor)
    page.keyboard.press("Enter")
    expect(panel.locator("h3")).to_have_text(cursor)
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
