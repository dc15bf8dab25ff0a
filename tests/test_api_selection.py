"""The second wave's selections and per-run evaluations through the API: `connected` in every selection
(against EAP-IG's iterative prune written out here, and against the page's prune.js run by node), the
per-pair table (against ew.evaluate on each pair alone), MIB's CPR/CMD (against ew.mib_scores), and
/faithfulness answered between MIB points."""
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import torch
from api_support import eap_ig_prune, finished_run, make_model, settings, sse_events, start_run, tiny_records, upload, wait
from fastapi.testclient import TestClient

import edgewise as ew
from edgewise.server import create_app

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(create_app(settings(tmp_path_factory.mktemp("selection"), curve_points=6))) as c:
        yield c


@pytest.fixture(scope="module")
def run(client):
    return finished_run(client, batch_size=4)


def ranked(client, run_id, **params) -> list[str]:
    return [e["name"] for e in client.get(f"/api/runs/{run_id}/edges", params=params).json()["edges"]]


def test_connected_in_every_selection_is_eap_igs_prune(client, run):
    rid, n = run["id"], run["n_edges"]
    full = client.get(f"/api/runs/{rid}/edges").json()["edges"]
    pruned_some = 0
    for k in (1, 3, 5, 8, 13, 21, 34, n):
        top = ranked(client, rid, top_k=k)
        want = eap_ig_prune(set(top))
        got = ranked(client, rid, top_k=k, connected="true")
        assert got == [e for e in top if e in want], k  # the prune keeps the ranking's order
        pruned_some += len(got) < len(top)
        circuit = client.get(f"/api/runs/{rid}/circuit", params={"top_k": k, "connected": "true"}).json()
        assert {e for e, v in circuit["edges"].items() if v["in_graph"]} == want
        assert circuit["selection"] == {"top_k": min(k, n), "connected": True}
    assert pruned_some >= 3, "the selections tried should include some the prune changes"
    t = abs(full[9]["score"])
    by_t = ranked(client, rid, min_abs_score=t, connected="true")
    assert set(by_t) == eap_ig_prune({e["name"] for e in full if abs(e["score"]) >= t})

    # faithfulness of a connected selection = faithfulness of those edges
    names = ranked(client, rid, top_k=8, connected="true")
    url = f"/api/runs/{rid}/faithfulness"
    a = client.post(url, json={"top_k": 8, "connected": True}).json()
    b = client.post(url, json={"edges": names}).json()
    c = client.post(url, json={"edges": ranked(client, rid, top_k=8), "connected": True}).json()
    assert a["n_edges"] == b["n_edges"] == c["n_edges"] == len(names)
    assert a["metric_circuit"] == pytest.approx(b["metric_circuit"], abs=1e-9) == c["metric_circuit"]
    assert client.get(f"/api/runs/{rid}/edges", params={"connected": "maybe"}).status_code == 422


@pytest.mark.skipif(shutil.which("node") is None and not os.environ.get("CI"), reason="node is not installed")
def test_the_pages_prune_agrees_with_the_servers(client, run):
    """frontend/js/prune.js (what the page draws) against /edges?connected=true (what it exports) on
    every top-k prefix of the run's ranking."""
    rid, n = run["id"], run["n_edges"]
    full = client.get(f"/api/runs/{rid}/edges").json()["edges"]
    script = ("import { connectedEdges } from './frontend/js/prune.js';"
              "const edges = JSON.parse(require_stdin());"
              "const out = []; for (let k = 1; k <= edges.length; k++) out.push(connectedEdges(edges.slice(0, k)).map((e) => e.name));"
              "process.stdout.write(JSON.stringify(out));")
    script = script.replace("require_stdin()", "(await import('node:fs')).readFileSync(0, 'utf8')")
    page = json.loads(subprocess.run(["node", "--input-type=module", "-e", script], input=json.dumps(full), cwd=REPO,
                                     capture_output=True, text=True, check=True, timeout=60).stdout)
    assert len(page) == n
    for k in range(1, n + 1, max(1, n // 40)):
        assert page[k - 1] == ranked(client, rid, top_k=k, connected="true"), k


def test_per_pair_metrics_equal_evaluate_on_each_pair_alone(client, run):
    rid = run["id"]
    names = ranked(client, rid, top_k=9)
    r = client.get(f"/api/runs/{rid}/pairs", params={"top_k": 9})
    assert r.status_code == 200, r.text
    body = r.json()
    records = tiny_records()
    assert body["n_edges"] == 9 and body["n_pairs"] == len(records) == len(body["pairs"])
    rows = body["pairs"]
    normalized = [p["normalized"] for p in rows]
    assert normalized == sorted(normalized), "worst first"
    model = make_model()
    for p in rows:
        alone = ew.PromptPairs.from_records(model, [records[p["index"]]])
        want = ew.evaluate(model, alone, names, metric="logit_diff", batch_size=1)
        assert p["metric_circuit"] == pytest.approx(want.metric_circuit, abs=1e-5)
        assert p["metric_clean"] == pytest.approx(want.metric_clean, abs=1e-5)
        assert p["metric_corrupted"] == pytest.approx(want.metric_corrupted, abs=1e-5)
        assert p["normalized"] == pytest.approx(want.normalized, abs=1e-4)
        # no tokenizer: the stored token ids themselves
        assert p["clean"] == records[p["index"]]["clean"] and p["clean_tokens"] == [str(t) for t in p["clean"]]
        assert p["answer"] == records[p["index"]]["answer"]
    # the mean over pairs is the faithfulness request's metric
    f = client.post(f"/api/runs/{rid}/faithfulness", json={"top_k": 9}).json()
    assert sum(p["metric_circuit"] for p in rows) / len(rows) == pytest.approx(f["metric_circuit"], abs=1e-6)
    # limit: the worst ones; a second request is served from the cache (no forward pass)
    ev = client.app.state.ctx.engine.cached_evaluator(rid)
    calls = []
    orig = ev.model.forward
    ev.model.forward = lambda *a, **kw: calls.append(1) or orig(*a, **kw)
    try:
        worst = client.get(f"/api/runs/{rid}/pairs", params={"top_k": 9, "limit": 2}).json()["pairs"]
    finally:
        del ev.model.forward
    assert worst == rows[:2] and calls == []
    connected = client.get(f"/api/runs/{rid}/pairs", params={"top_k": 9, "connected": "true"}).json()
    assert connected["n_edges"] == len(ranked(client, rid, top_k=9, connected="true"))


def test_per_pair_texts_are_decoded_with_the_models_tokenizer():
    from edgewise.server.views import pair_rows

    task = ew.load_task("toy-ioi")
    model = ew.load_model(task.model)
    pairs = ew.PromptPairs.from_records(model, task.pairs.records[:3])
    values = {"clean": [2.0, 2.0, 1.0], "corrupted": [0.0, 0.0, 1.0], "circuit": [1.5, 0.5, 1.0]}
    rows = pair_rows(pairs, model.tokenizer, values)
    assert [r["index"] for r in rows] == [1, 0, 2] and [r["normalized"] for r in rows] == [0.25, 0.75, None]
    for r in rows:
        i = r["index"]
        assert r["clean_tokens"] == model.to_str_tokens(torch.tensor(pairs.clean[i]))
        assert r["answer"] == model.tokenizer.decode([pairs.answer[i]])
        # the text: the record's, BOS left out (this word-level tokenizer joins words with single spaces)
        assert r["clean"].replace(" ", "") == task.pairs.records[i]["clean"].replace(" ", "")
        assert r["clean_tokens"][0] == model.tokenizer.bos_token and r["clean_tokens"][0] not in r["clean"]


def test_mib_scores_equal_the_engines(client, run):
    rid = run["id"]
    mib = client.get(f"/api/runs/{rid}/mib")
    assert mib.status_code == 200, mib.text
    got = mib.json()
    model = make_model()
    graph = ew.Graph.from_model(model)
    by_name = {e["name"]: e["score"] for e in client.get(f"/api/runs/{rid}/edges").json()["edges"]}
    scores = torch.tensor([by_name[n] for n in graph.edge_names], dtype=torch.float64)
    want = ew.mib_scores(model, ew.PromptPairs.from_records(model, tiny_records()), scores, batch_size=4)
    # float32 model: the server's cached, stacked passes and a fresh evaluator differ in the 7th digit
    assert got["cpr"] == pytest.approx(want["cpr"], rel=1e-5) and got["cmd"] == pytest.approx(want["cmd"], rel=1e-5)
    for key in ("points", "points_abs"):
        assert [(p["fraction"], p["k"], p["n_edges"]) for p in got[key]] == \
            [(p["fraction"], p["k"], p["n_edges"]) for p in want[key]]
        assert [p["faithfulness"] for p in got[key]] == pytest.approx([p["faithfulness"] for p in want[key]], rel=1e-5, abs=1e-5)


def test_mib_is_409_for_an_import(client, run):
    text = client.get(f"/api/runs/{run['id']}/circuit", params={"top_k": 5}).text
    imp = client.post("/api/circuits", content=text, headers={"content-type": "application/json"}).json()
    r = client.get(f"/api/runs/{imp['id']}/mib")
    assert r.status_code == 409 and "imported" in r.json()["detail"]["message"]
    own = client.get(f"/api/runs/{imp['id']}/edges", params={"own": "true"}).json()["edges"]
    assert [e["name"] for e in own] == ranked(client, run["id"], top_k=5)


def test_faithfulness_is_served_between_mib_points_and_cancel_there_keeps_the_curve(tmp_path):
    # test_slow sleeps 30 ms per metric call: each MIB circuit costs 6 pairs × 30 ms
    with TestClient(create_app(settings(tmp_path, curve_points=2))) as c:
        run = start_run(c, upload(c, tiny_records(6))["id"], metric="test_slow", batch_size=1)
        events: list = []
        curve_done = threading.Event()  # the last curve point is out: MIB's points compute now

        def follow():
            with c.stream("GET", f"/api/runs/{run['id']}/events") as r:
                for event, data in sse_events(r.iter_lines()):
                    events.append((event, data))
                    if event == "curve" and data["index"] == data["total"] - 1:
                        curve_done.set()

        follower = threading.Thread(target=follow)
        follower.start()
        assert curve_done.wait(30)
        f = c.post(f"/api/runs/{run['id']}/faithfulness", json={"top_k": 3})
        assert f.status_code == 200
        assert c.get(f"/api/runs/{run['id']}/mib").status_code == 409, "answered after MIB's points, not between"
        c.post(f"/api/runs/{run['id']}/cancel")
        end = wait(c, run["id"])
        follower.join(30)
    assert end["status"] == "done" and end["curve_complete"]
    assert "cancelled during the MIB scores (the faithfulness curve is complete)" in end["warnings"]
    names = [e for e, _ in events]
    assert "mib" not in names and names[-1] == "done" and "curve" in names
