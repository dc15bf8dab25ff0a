"""Runs: 202 at once, the worker, SSE progress, cancellation, failures, validation, the model cache."""
import time

import pytest
import torch
from api_support import make_model, read_sse, settings, start_run, tiny_records, upload, wait
from fastapi.testclient import TestClient

import edgewise as ew
from edgewise.server import create_app


@pytest.fixture
def app(tmp_path):
    return create_app(settings(tmp_path))


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def events(client, run_id, **params):
    with client.stream("GET", f"/api/runs/{run_id}/events", params=params) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        return read_sse(r.iter_lines())


def test_run_answers_202_at_once_then_streams_progress_and_done(client):
    ds = upload(client)
    t0 = time.perf_counter()
    # test_slow (30 ms a metric call) keeps the run busy ~1.6 s, so the stream below joins while it works
    run = start_run(client, ds["id"], method="eap-ig-inputs", ig_steps=3, metric="test_slow", batch_size=3)
    assert time.perf_counter() - t0 < 1.0 and run["status"] in ("queued", "running")
    evs = events(client, run["id"])
    names = [e for e, _ in evs]
    assert names[-1] == "done" and set(names[:-1]) == {"progress", "scored", "curve", "mib"} and len(names) >= 4
    # scores first: `scored` once, before every curve point, and the curve's points in order; MIB's
    # scores once, after the last curve point
    assert names.count("scored") == 1 and names.index("scored") < names.index("curve")
    assert names.count("mib") == 1 and names.index("mib") > max(i for i, e in enumerate(names) if e == "curve")
    curve = [d for e, d in evs if e == "curve"]
    assert [c["index"] for c in curve] == list(range(curve[0]["total"])) and curve[-1]["k"] == evs[-1][1]["n_edges"]
    assert evs[-1][1]["scored"] and evs[-1][1]["curve_complete"]
    fractions = [d["progress"] for e, d in evs if e == "progress"]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] <= 1
    stages = [d["stage"] for e, d in evs if e == "progress"]
    assert set(stages) <= {"starting", "loading model", "attribution", "saving", "faithfulness curve", "mib"}
    assert "faithfulness curve" in stages and ("attribution" in stages or names.index("scored") == 1)
    done = evs[-1][1]
    assert done["status"] == "done" and done["progress"] == 1 and done["n_edges"] == ew.Graph.from_model(make_model()).n_edges
    # a client connecting after the end gets the final event alone
    assert events(client, run["id"]) == [("done", client.get(f"/api/runs/{run['id']}").json())]


def test_stored_scores_equal_the_engine(client):
    records = tiny_records(6)
    ds = upload(client, records)
    run = wait(client, start_run(client, ds["id"], ablation="zero", batch_size=4)["id"])
    model = make_model()
    expected = ew.attribute(model, ew.PromptPairs.from_records(model, records), method="eap", metric="logit_diff",
                            ablation="zero", batch_size=3)
    got = {e["name"]: e["score"] for e in client.get(f"/api/runs/{run['id']}/edges").json()["edges"]}
    want = dict(zip(expected.edges, expected.scores.tolist()))
    assert got.keys() == want.keys()
    assert torch.allclose(torch.tensor([got[k] for k in want]), torch.tensor(list(want.values())), atol=1e-5)


def test_curve_points_setting(tmp_path):
    with TestClient(create_app(settings(tmp_path, curve_points=4))) as c:
        run = wait(c, start_run(c, upload(c)["id"])["id"])
        ks = [p["k"] for p in c.get(f"/api/runs/{run['id']}/curve").json()["points"]]
        # 4 log-spaced sizes (plus 0 and all) and MIB's 10 fractions of the edges
        assert ks == ew.curve_ks(run["n_edges"], 4) and ks[0] == 0 and ks[-1] == run["n_edges"]
        assert {int(p * run["n_edges"]) for p in ew.MIB_FRACTIONS} <= set(ks) and len(ks) <= 16


def test_models_are_loaded_once_across_runs(app, client):
    ds = upload(client)  # the upload loads "tiny" to tokenize
    for method in ("eap", "clean-corrupted"):
        assert wait(client, start_run(client, ds["id"], method=method)["id"])["status"] == "done"
    assert app.state.ctx.engine.models.loads == 1


@pytest.mark.parametrize("change, field, words", [
    ({"method": "magic"}, "method", "eap"),
    ({"metric": "accuracy"}, "metric", "unknown metric"),
    ({"ablation": "noise"}, "ablation", "resample"),
    ({"batch_size": 0}, "batch_size", "greater than"),
    ({"ig_steps": -1}, "ig_steps", "greater than"),
    ({"dataset_id": "nope"}, "dataset_id", "no dataset"),
    ({"model": "gpt-17"}, "model", "unknown model"),
    ({"model": "tiny-attn"}, "dataset_id", "tokenized for model"),
])
def test_bad_run_requests_are_422_naming_the_field(client, change, field, words):
    ds = upload(client)
    body = {"model": "tiny", "dataset_id": ds["id"], "method": "eap", "metric": "logit_diff", **change}
    r = client.post("/api/runs", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail["field"] == field and words in detail["message"], detail
    assert client.get("/api/runs").json() == []


def test_metric_must_fit_model_and_dataset(client):
    ds = upload(client, model="tiny-attn", records=tiny_records(3))
    r = client.post("/api/runs", json={"model": "tiny-attn", "dataset_id": ds["id"], "metric": "prob_diff"})
    assert r.status_code == 422 and "does not fit model" in r.json()["detail"]["message"]
    no_answers = [{"clean": r["clean"], "corrupted": r["corrupted"]} for r in tiny_records(3)]
    ds = upload(client, no_answers)
    r = client.post("/api/runs", json={"model": "tiny", "dataset_id": ds["id"], "metric": "logit_diff"})
    assert r.status_code == 422 and "needs answer" in r.json()["detail"]["message"]
    r = client.post("/api/runs", json={"model": "tiny", "dataset_id": ds["id"], "metric": "kl", "method": "clean-corrupted"})
    assert r.status_code == 202


def test_path_like_model_is_refused(client):
    ds = upload(client)
    r = client.post("/api/runs", json={"model": "/etc", "dataset_id": ds["id"]})
    assert r.status_code == 400 and "refused" in r.json()["detail"]["message"]


def test_a_failing_run_is_failed_with_its_error_and_the_server_lives_on(client):
    ds = upload(client)
    run = start_run(client, ds["id"], metric="test_boom")
    evs = events(client, run["id"])
    assert evs[-1][0] == "failed" and "boom" in evs[-1][1]["error"]
    assert wait(client, run["id"])["status"] == "failed"
    assert client.get("/api/health").status_code == 200
    for path in ("edges", "curve", "circuit"):
        r = client.get(f"/api/runs/{run['id']}/{path}")
        assert r.status_code == 409 and "failed" in r.json()["detail"]["message"]
    assert wait(client, start_run(client, ds["id"])["id"])["status"] == "done"  # the worker still works


def test_cancel_a_running_and_a_queued_run(client):
    ds = upload(client, tiny_records(12))
    slow = start_run(client, ds["id"], metric="test_slow", batch_size=1, method="eap-ig-inputs", ig_steps=4)
    queued = start_run(client, ds["id"], metric="test_slow", batch_size=1)
    wait(client, slow["id"], until=("running",))
    r = client.post(f"/api/runs/{queued['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"  # still queued: cancelled at once
    while client.get(f"/api/runs/{slow['id']}").json()["progress"] == 0:
        time.sleep(0.02)
    assert client.post(f"/api/runs/{slow['id']}/cancel").json()["status"] == "running"
    evs = events(client, slow["id"])
    assert evs[-1][0] == "cancelled"
    run = wait(client, slow["id"])
    assert run["status"] == "cancelled" and run["progress"] < 1
    assert client.post(f"/api/runs/{slow['id']}/cancel").status_code == 409
    assert client.get(f"/api/runs/{queued['id']}").json()["status"] == "cancelled"
    assert client.get(f"/api/runs/{slow['id']}/edges").status_code == 409
    assert wait(client, start_run(client, ds["id"])["id"])["status"] == "done"


def test_run_listing_and_unknown_ids(client):
    ds = upload(client)
    a = start_run(client, ds["id"])
    b = start_run(client, ds["id"], method="clean-corrupted")
    wait(client, a["id"]), wait(client, b["id"])
    listed = client.get("/api/runs").json()
    assert [r["id"] for r in listed] == [b["id"], a["id"]]
    assert client.get("/api/runs?limit=1").json()[0]["id"] == b["id"]
    for path in ("", "/edges", "/curve", "/circuit", "/events"):
        r = client.get(f"/api/runs/nope{path}")
        assert r.status_code == 404 and "no run" in r.json()["detail"]["message"], path
    assert client.post("/api/runs/nope/cancel").status_code == 404
    assert client.post("/api/runs/nope/faithfulness", json={"top_k": 1}).status_code == 404
