"""Scores first (issue 9): a run publishes `scored` as soon as its scores are stored; /edges, /circuit and
/faithfulness answer from then on; the curve streams point by point; a /faithfulness request made
while the curve computes is served between two points; cancelling during the curve keeps the scores."""
import threading

import pytest
import torch
from api_support import make_model, read_sse, settings, start_run, tiny_records, upload, wait
from fastapi.testclient import TestClient

import edgewise as ew
from edgewise.server import create_app

# the test_slow metric sleeps 30 ms per call: each curve point costs 12 pairs × 30 ms ≈ 0.4 s
SLOW = dict(metric="test_slow", batch_size=1)


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(settings(tmp_path, curve_points=8))) as c:
        yield c


def collect(client, run_id, out: list):
    with client.stream("GET", f"/api/runs/{run_id}/events") as r:
        out.extend(read_sse(r.iter_lines()))


def n_points(client, run_id) -> int:
    return len(client.get(f"/api/runs/{run_id}/curve").json()["points"])


def test_scored_before_the_curve_and_faithfulness_between_curve_points_and_cancel_keeps_scores(client):
    ds = upload(client, tiny_records(12))
    run = start_run(client, ds["id"], **SLOW)
    early: list = []
    follower = threading.Thread(target=collect, args=(client, run["id"], early))
    follower.start()
    assert client.get(f"/api/runs/{run['id']}/edges").status_code == 409  # nothing before the scores
    scored = wait(client, run["id"], until=("running",))
    while not scored["scored"]:
        scored = client.get(f"/api/runs/{run['id']}").json()
    assert scored["status"] == "running" and not scored["curve_complete"]

    # from `scored` on, the results answer while the curve computes
    edges = client.get(f"/api/runs/{run['id']}/edges", params={"top_k": 5})
    assert edges.status_code == 200 and len(edges.json()["edges"]) == 5
    assert client.get(f"/api/runs/{run['id']}/circuit", params={"top_k": 5}).status_code == 200
    before = n_points(client, run["id"])
    f = client.post(f"/api/runs/{run['id']}/faithfulness", json={"top_k": 5})
    assert f.status_code == 200, f.text
    after = client.get(f"/api/runs/{run['id']}/curve").json()
    # served between two points: at most the point in flight (and one racing the request) finished meanwhile
    assert not after["complete"] and len(after["points"]) <= before + 2
    total = len(client.app.state.ctx.engine.curve_ks(scored["n_edges"]))
    assert len(after["points"]) < total
    assert client.get(f"/api/runs/{run['id']}").json()["status"] == "running"

    # a client joining now gets progress, scored and the points so far, then the live events
    late: list = []
    joiner = threading.Thread(target=collect, args=(client, run["id"], late))
    joiner.start()
    while n_points(client, run["id"]) < 1:
        pass
    r = client.post(f"/api/runs/{run['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "running"
    follower.join(30)
    joiner.join(30)

    end = client.get(f"/api/runs/{run['id']}").json()
    assert end["status"] == "done" and end["scored"] and not end["curve_complete"]
    n = len(client.get(f"/api/runs/{run['id']}/curve").json()["points"])
    assert f"cancelled during the faithfulness curve: {n} of {total} points computed" in end["warnings"]
    curve = client.get(f"/api/runs/{run['id']}/curve").json()
    assert not curve["complete"] and 1 <= len(curve["points"]) < total
    assert client.get(f"/api/runs/{run['id']}/edges", params={"top_k": 5}).json() == edges.json()  # scores kept

    names = [e for e, _ in early]
    assert names[-1] == "done" and names.count("scored") == 1
    assert names.index("scored") < names.index("curve")
    assert [d["index"] for e, d in early if e == "curve"] == list(range(names.count("curve")))
    assert [e for e, _ in late][:2] == ["progress", "scored"] and late[-1][0] == "done"
    late_idx = [d["index"] for e, d in late if e == "curve"]
    assert late_idx == list(range(len(late_idx)))  # the stored points, then the live ones, none twice
    assert len(late_idx) == len(curve["points"])


def test_curve_answers_partial_points_with_complete_false_until_the_end(client):
    ds = upload(client, tiny_records(6))
    run = wait(client, start_run(client, ds["id"])["id"])
    c = client.get(f"/api/runs/{run['id']}/curve").json()
    assert c["complete"] and run["curve_complete"] and run["scored"]
    ks = [p["k"] for p in c["points"]]
    assert ks == sorted(ks) and ks == client.app.state.ctx.engine.curve_ks(run["n_edges"])
    assert all(p["fraction"] == pytest.approx(p["k"] / run["n_edges"]) for p in c["points"])


def test_cancel_before_the_scores_ends_cancelled_without_scores(client):
    ds = upload(client, tiny_records(12))
    run = start_run(client, ds["id"], method="eap-ig-inputs", ig_steps=6, **SLOW)
    while client.get(f"/api/runs/{run['id']}").json()["progress"] == 0:
        pass
    client.post(f"/api/runs/{run['id']}/cancel")
    end = wait(client, run["id"])
    assert end["status"] == "cancelled" and not end["scored"]
    assert client.get(f"/api/runs/{run['id']}/edges").status_code == 409


def test_uncached_curve_goes_in_groups_and_equals_the_engine(tmp_path):
    """Activations over EDGEWISE_ACTIVATION_CACHE_MB are not kept: the curve's points are computed four
    groups at a time (one data pass each); the values equal ew.faithfulness_curve's."""
    records = tiny_records(6)
    with TestClient(create_app(settings(tmp_path, curve_points=8, activation_cache_mb=1e-6))) as c:
        run = wait(c, start_run(c, upload(c, records)["id"])["id"])
        assert not c.app.state.ctx.engine.cached_evaluator(run["id"]).cache
        curve = c.get(f"/api/runs/{run['id']}/curve").json()
        got = {e["name"]: e["score"] for e in c.get(f"/api/runs/{run['id']}/edges").json()["edges"]}
        live = c.post(f"/api/runs/{run['id']}/faithfulness", json={"top_k": 4}).json()
    model = make_model()
    pairs = ew.PromptPairs.from_records(model, records)
    graph = ew.Graph.from_model(model)
    scores = torch.tensor([got[n] for n in graph.edge_names], dtype=torch.float64)
    want = ew.faithfulness_curve(model, pairs, scores, ks=[p["k"] for p in curve["points"]], batch_size=4)
    assert curve["complete"] and len(want) == len(curve["points"])
    for p, q in zip(curve["points"], want):
        assert p["k"] == q["k"] and p["metric_circuit"] == pytest.approx(q["metric_circuit"], abs=1e-5)
    assert live["metric_circuit"] == pytest.approx(ew.evaluate(model, pairs, ew.Circuit.from_scores(
        graph, scores, top_k=4), batch_size=4).metric_circuit, abs=1e-5)
