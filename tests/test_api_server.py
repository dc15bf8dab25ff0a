"""The app as a whole: a real uvicorn process, restart after a crash, auth, the page, health, tasks, /docs."""
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from api_support import (finished_run, free_port, make_model, read_sse, settings, stop_process, tiny_records,
                         wait_healthy)
from fastapi.testclient import TestClient

import edgewise as ew
from edgewise.server import create_app

HERE = Path(__file__).resolve().parent


def test_real_uvicorn_process_upload_run_and_sse(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "api_server_main.py"), str(port), str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc)
        with httpx.Client(base_url=base, timeout=30) as c:
            ds = c.post("/api/datasets", json={"model": "tiny", "pairs": tiny_records()})
            assert ds.status_code == 201, ds.text
            r = c.post("/api/runs", json={"model": "tiny", "dataset_id": ds.json()["id"], "batch_size": 4})
            assert r.status_code == 202
            with c.stream("GET", f"/api/runs/{r.json()['id']}/events") as s:
                evs = read_sse(s.iter_lines())
            assert evs[-1][0] == "done" and evs[-1][1]["status"] == "done"
            edges = c.get(f"/api/runs/{r.json()['id']}/edges", params={"top_k": 3}).json()
            assert len(edges["edges"]) == 3
            assert c.post("/api/datasets", content=b"\xff", headers={"content-type": "application/json"}).status_code == 422
            assert c.get("/api/health").json()["status"] == "ok"
    finally:
        stop_process(proc)


def test_server_killed_mid_run_marks_it_failed_and_keeps_finished_runs(tmp_path):
    app = create_app(settings(tmp_path))
    with TestClient(app) as c:
        done = finished_run(c, batch_size=4)
        edges = c.get(f"/api/runs/{done['id']}/edges").json()
        curve = c.get(f"/api/runs/{done['id']}/curve").json()
    store = app.state.ctx.store  # what a crash leaves in the database: one row running, one queued
    args = dict(model="tiny", dataset_id=done["dataset_id"], method="eap", metric="logit_diff", ablation="resample",
                batch_size=4, ig_steps=5)
    running = store.create_run(**args)
    store.set_status(running["id"], "running")
    store.set_progress(running["id"], 0.4, "attribution")
    queued = store.create_run(**args)

    with TestClient(create_app(settings(tmp_path))) as c:
        for r in (running, queued):
            got = c.get(f"/api/runs/{r['id']}").json()
            assert got["status"] == "failed" and got["error"].startswith("interrupted"), got
        with c.stream("GET", f"/api/runs/{running['id']}/events") as s:
            assert read_sse(s.iter_lines())[-1][0] == "failed"
        assert c.get(f"/api/runs/{done['id']}").json()["status"] == "done"
        assert c.get(f"/api/runs/{done['id']}/edges").json() == edges
        assert c.get(f"/api/runs/{done['id']}/curve").json() == curve
        assert c.post(f"/api/runs/{done['id']}/faithfulness", json={"top_k": 2}).status_code == 200


def test_token_guards_every_api_call_but_not_the_page(tmp_path):
    front = tmp_path / "frontend"
    front.mkdir()
    (front / "index.html").write_text("<title>edgewise</title>")
    with TestClient(create_app(settings(tmp_path, token="s3cret"))) as c:
        for path in ("/api/health", "/api/models", "/api/tasks", "/api/runs", "/api/datasets"):
            r = c.get(path)
            assert r.status_code == 401 and "token" in r.json()["detail"]["message"], path
            assert r.headers["www-authenticate"] == "Bearer"
        assert c.post("/api/datasets", json={"model": "tiny", "pairs": tiny_records(2)}).status_code == 401
        assert c.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = c.get("/api/health", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["auth"] is True
        # ?token= only on the event stream's GET (EventSource sends no headers); nowhere else
        r = c.get("/api/health", params={"token": "s3cret"})
        assert r.status_code == 401 and "events only" in r.json()["detail"]["message"]
        assert c.post("/api/datasets", params={"token": "s3cret"},
                      json={"model": "tiny", "pairs": tiny_records(2)}).status_code == 401
        assert c.get("/api/runs/nope/events", params={"token": "s3cret"}).status_code == 404  # past the token check
        assert c.get("/api/runs/nope/events", params={"token": "wrong"}).status_code == 401
        assert c.get("/").status_code == 200


def test_page_static_files_and_vendor_libraries(tmp_path):
    front = tmp_path / "frontend"
    for rel, text in {"index.html": "<title>edgewise</title>", "css/app.css": "body{}", "js/app.js": "export {}",
                      "node_modules/cytoscape/dist/cytoscape.min.js": "/*cy*/"}.items():
        (front / rel).parent.mkdir(parents=True, exist_ok=True)
        (front / rel).write_text(text)
    with TestClient(create_app(settings(tmp_path))) as c:
        r = c.get("/")
        assert r.status_code == 200 and "edgewise" in r.text and r.headers["content-type"].startswith("text/html")
        assert c.get("/css/app.css").text == "body{}"
        js = c.get("/js/app.js")
        assert js.text == "export {}" and "javascript" in js.headers["content-type"]
        assert c.get("/vendor/cytoscape.min.js").text == "/*cy*/"
        missing = c.get("/vendor/plotly-basic.min.js")
        assert missing.status_code == 404 and "npm ci" in missing.json()["detail"]["message"]
        assert c.get("/vendor/../../etc/passwd").status_code == 404
        assert c.get("/js/../../secrets").status_code == 404


def test_no_frontend_directory_is_a_clear_404(tmp_path):
    with TestClient(create_app(settings(tmp_path))) as c:
        r = c.get("/")
        assert r.status_code == 404 and "EDGEWISE_FRONTEND" in r.json()["detail"]["message"]
        assert c.get("/js/app.js").status_code == 404


def test_health_models_tasks(tmp_path):
    with TestClient(create_app(settings(tmp_path))) as c:
        h = c.get("/api/health").json()
        assert h["status"] == "ok" and h["device"] == "cpu" and h["version"] and h["auth"] is False
        models = {m["name"]: m for m in c.get("/api/models").json()}
        assert set(models) == {"tiny", "tiny-attn"} and models["tiny"]["n_edges"] == 46
        tasks = c.get("/api/tasks").json()
        assert tasks[0]["name"] == "tiny-task" and tasks[0]["n_pairs"] == 8


def test_task_pairs_download_round_trips_as_an_upload(tmp_path):
    with TestClient(create_app(settings(tmp_path))) as c:
        jsonl = c.get("/api/tasks/tiny-task/pairs")
        assert jsonl.status_code == 200 and "attachment" in jsonl.headers["content-disposition"]
        assert [json.loads(x) for x in jsonl.text.splitlines()] == tiny_records(8)
        as_csv = c.get("/api/tasks/tiny-task/pairs", params={"format": "csv"})
        assert as_csv.text.splitlines()[0] == "clean,corrupted,answer,wrong_answer"
        a = c.post("/api/datasets", files={"file": ("t.csv", as_csv.content)}, data={"model": "tiny"})
        b = c.post("/api/datasets", files={"file": ("t.jsonl", jsonl.content)}, data={"model": "tiny"})
        assert a.status_code == b.status_code == 201 and a.json()["id"] == b.json()["id"]
        assert a.json()["count"] == 8
        assert c.get("/api/tasks/nope/pairs").status_code == 404
        assert c.get("/api/tasks/..%2F..%2Fetc/pairs").status_code == 404
        assert c.get("/api/tasks/tiny-task/pairs", params={"format": "xml"}).json()["detail"]["field"] == "format"


def test_openapi_documents_the_whole_api(tmp_path):
    with TestClient(create_app(settings(tmp_path))) as c:
        spec = c.get("/openapi.json").json()
        assert c.get("/docs").status_code == 200
    paths = spec["paths"]
    for path, method in [("/api/health", "get"), ("/api/models", "get"), ("/api/tasks", "get"),
                         ("/api/tasks/{name}/pairs", "get"), ("/api/datasets", "post"), ("/api/runs", "post"),
                         ("/api/runs", "get"), ("/api/runs/{run_id}", "get"), ("/api/runs/{run_id}/events", "get"),
                         ("/api/runs/{run_id}/cancel", "post"), ("/api/runs/{run_id}/edges", "get"),
                         ("/api/runs/{run_id}/faithfulness", "post"), ("/api/runs/{run_id}/curve", "get"),
                         ("/api/runs/{run_id}/circuit", "get"), ("/api/circuits", "post")]:
        assert method in paths.get(path, {}), (path, method)
    assert set(paths["/api/datasets"]["post"]["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    methods = spec["components"]["schemas"]["RunCreate"]["properties"]["method"]
    assert "eap-ig-inputs" in json.dumps(methods)


@pytest.mark.skipif(not (Path(__file__).resolve().parents[1] / "backend/edgewise/zoo/toy-induction/pairs.jsonl").exists(),
                    reason="zoo not built")
def test_real_zoo_task_end_to_end(tmp_path):
    """The default catalog: the bundled toy-induction task, its pairs downloaded, uploaded, run."""
    from edgewise.server import Settings

    with TestClient(create_app(Settings(data_dir=tmp_path, device="cpu", allowed_hosts=("testserver",)))) as c:
        assert "toy-induction" in {t["name"] for t in c.get("/api/tasks").json()}
        lines = c.get("/api/tasks/toy-induction/pairs").text.splitlines()[:8]
        ds = c.post("/api/datasets", json={"model": "toy-induction", "pairs": [json.loads(x) for x in lines]})
        assert ds.status_code == 201, ds.text
        r = c.post("/api/runs", json={"model": "toy-induction", "dataset_id": ds.json()["id"], "batch_size": 8})
        with c.stream("GET", f"/api/runs/{r.json()['id']}/events") as s:
            assert read_sse(s.iter_lines())[-1][0] == "done"
        top = c.get(f"/api/runs/{r.json()['id']}/edges", params={"top_k": 3}).json()["edges"]
        model = ew.load_model("toy-induction", device="cpu")
        res = ew.attribute(model, ew.PromptPairs.from_records(model, [json.loads(x) for x in lines]), batch_size=8)
        assert top[0]["name"] == res.edges[int(res.ranking()[0])]
        assert top[0]["score"] == pytest.approx(float(res.scores[res.ranking()[0]]), rel=1e-4)
        f = c.post(f"/api/runs/{r.json()['id']}/faithfulness", json={"top_k": 10}).json()
        assert f["metric_clean"] > f["metric_corrupted"]


def test_shutdown_mid_run_marks_it_interrupted_not_cancelled(tmp_path):
    app = create_app(settings(tmp_path))
    with TestClient(app) as c:
        ds = c.post("/api/datasets", json={"model": "tiny", "pairs": tiny_records(12)}).json()
        r = c.post("/api/runs", json={"model": "tiny", "dataset_id": ds["id"], "metric": "test_slow", "batch_size": 1,
                                      "method": "eap-ig-inputs"}).json()
        while c.get(f"/api/runs/{r['id']}").json()["progress"] == 0:
            time.sleep(0.02)
    run = app.state.ctx.store.get_run(r["id"])  # the worker was stopped with the app
    assert run["status"] == "failed" and run["error"].startswith("interrupted")


def test_settings_from_environment(tmp_path):
    from edgewise.server import Settings

    s = Settings.from_env({"EDGEWISE_DATA": str(tmp_path), "EDGEWISE_MAX_UPLOAD_MB": "1.5", "EDGEWISE_TOKEN": "t",
                           "EDGEWISE_MODEL_DIRS": f"{tmp_path}/a:{tmp_path}/b", "EDGEWISE_DEVICE": "cpu",
                           "EDGEWISE_MAX_PAIRS": "7", "EDGEWISE_FRONTEND": str(tmp_path / "f"),
                           "EDGEWISE_CURVE_POINTS": "5"})
    assert s.data_dir == tmp_path and s.max_upload_bytes == int(1.5 * 2**20) and s.token == "t"
    assert s.model_dirs == (tmp_path / "a", tmp_path / "b") and s.resolved_device() == "cpu"
    assert s.max_pairs == 7 and s.frontend_dir == tmp_path / "f" and s.curve_points == 5
    d = Settings.from_env({})
    assert d.token is None and d.model_dirs == () and d.max_upload_mb == 20 and d.frontend_dir.name == "frontend"


def test_an_unexpected_error_is_a_500_in_the_api_error_shape(tmp_path):
    s = settings(tmp_path)

    def broken():
        raise KeyError("n_layers")

    s.catalog.list_models = broken
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        r = c.get("/api/models")
        assert r.status_code == 500 and r.json()["detail"]["message"].startswith("internal error (reference ")
        assert "n_layers" not in r.text and "KeyError" not in r.text  # no internal text in the answer
        assert c.get("/api/health").status_code == 200


def test_store_is_safe_to_share_between_threads(tmp_path):
    import threading

    from edgewise.server.store import Store

    store = Store(tmp_path)
    ds, _ = store.add_dataset("tiny", ew.PromptPairs.from_records(make_model(), tiny_records(2)))
    runs = [store.create_run(model="tiny", dataset_id=ds["id"], method="eap", metric="logit_diff", ablation="resample",
                             batch_size=1, ig_steps=1) for _ in range(4)]
    errors = []

    def hammer(run_id):
        try:
            for i in range(100):
                store.set_progress(run_id, i / 100, "attribution")
                assert store.get_run(run_id)["progress"] == i / 100
                store.list_runs(10)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(r["id"],)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
