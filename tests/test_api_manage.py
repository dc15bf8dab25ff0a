"""Managing runs and datasets: rename, delete (refused while in use), listings that page and leave out
bulky fields, the queue cap (429), dtypes, strict bodies, streamed uploads, an unusable data directory."""
import asyncio
import json
import sqlite3
import threading
import tracemalloc
import uuid

import pytest
import torch
from api_support import settings, start_run, tiny_records, upload, wait
from fastapi.testclient import TestClient
from test_circuit_json import eap_ig_file

from edgewise import cli
from edgewise.server import create_app
from edgewise.server.store import Store, StoreError

SLOW = dict(metric="test_slow", batch_size=1, method="eap-ig-inputs", ig_steps=6)


@pytest.fixture
def app(tmp_path):
    return create_app(settings(tmp_path, curve_points=4))


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def test_rename_a_run(client):
    run = wait(client, start_run(client, upload(client)["id"], name="first try")["id"])
    assert run["name"] == "first try"
    r = client.patch(f"/api/runs/{run['id']}", json={"name": "  IOI, resample  "})
    assert r.status_code == 200 and r.json()["name"] == "IOI, resample"
    assert client.get("/api/runs").json()[0]["name"] == "IOI, resample"
    assert client.patch(f"/api/runs/{run['id']}", json={"name": None}).json()["name"] is None
    for body, field in (({"name": "x" * 201}, "name"), ({"name": 5}, "name"), ({"name": "a\nb"}, "name"),
                        ({}, "name"), ({"name": "ok", "color": "red"}, "color")):
        r = client.patch(f"/api/runs/{run['id']}", json=body)
        assert r.status_code == 422 and r.json()["detail"]["field"] == field, (body, r.text)
    assert client.patch("/api/runs/nope", json={"name": "x"}).status_code == 404


def test_delete_runs_and_datasets_refused_while_in_use(client):
    ds = upload(client, tiny_records(12))
    done = wait(client, start_run(client, ds["id"])["id"])
    slow = start_run(client, ds["id"], **SLOW)
    queued = start_run(client, ds["id"])
    wait(client, slow["id"], until=("running",))
    for run in (slow, queued):
        r = client.delete(f"/api/runs/{run['id']}")
        assert r.status_code == 409 and "cancel it first" in r.json()["detail"]["message"]
    r = client.delete(f"/api/datasets/{ds['id']}")
    assert r.status_code == 409 and slow["id"] in r.json()["detail"]["message"]
    client.post(f"/api/runs/{slow['id']}/cancel")
    client.post(f"/api/runs/{queued['id']}/cancel")
    wait(client, slow["id"])
    assert client.post(f"/api/runs/{done['id']}/faithfulness", json={"top_k": 3}).status_code == 200
    edges = client.get(f"/api/runs/{done['id']}/edges").json()
    assert client.delete(f"/api/datasets/{ds['id']}").status_code == 204
    assert client.get(f"/api/datasets/{ds['id']}").status_code == 404
    # finished runs keep their scores; evaluating a circuit needs the pairs, now gone
    assert client.get(f"/api/runs/{done['id']}/edges").json() == edges
    r = client.post(f"/api/runs/{done['id']}/faithfulness", json={"top_k": 3})
    assert r.status_code == 409 and "deleted" in r.json()["detail"]["message"]
    r = client.post("/api/runs", json={"model": "tiny", "dataset_id": ds["id"]})
    assert r.status_code == 422 and r.json()["detail"]["field"] == "dataset_id"
    assert client.delete(f"/api/runs/{done['id']}").status_code == 204
    assert client.get(f"/api/runs/{done['id']}").status_code == 404
    assert client.get(f"/api/runs/{done['id']}/edges").status_code == 404
    assert client.delete(f"/api/runs/{done['id']}").status_code == 404
    assert client.delete(f"/api/datasets/{ds['id']}").status_code == 404


def test_listings_page_and_leave_out_bulky_fields(client):
    ids = [client.post("/api/circuits", json=eap_ig_file(2, 2)).json()["id"] for _ in range(5)]
    page = client.get("/api/runs", params={"limit": 2})
    assert page.headers["x-total-count"] == "5" and [r["id"] for r in page.json()] == ids[::-1][:2]
    rest = client.get("/api/runs", params={"limit": 2, "offset": 4}).json()
    assert [r["id"] for r in rest] == [ids[0]]
    assert all("meta" not in r and "cfg" not in r for r in page.json())
    assert client.get(f"/api/runs/{ids[0]}").json()["meta"]["source_file"] == ""  # the run itself has it all
    upload(client, tiny_records(3))
    upload(client, tiny_records(4, seed=3))
    listed = client.get("/api/datasets", params={"limit": 1})
    assert listed.headers["x-total-count"] == "2" and len(listed.json()) == 1
    assert listed.json()[0]["preview"] is None and listed.json()[0]["warnings"] is None
    assert client.get(f"/api/datasets/{listed.json()[0]['id']}").json()["preview"]


def test_an_import_is_never_listed_done_without_its_scores(client):
    """It used to be committed `done` first and its scores after (409 in between)."""
    seen, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            for r in client.get("/api/runs", params={"limit": 500}).json():
                if r["status"] == "done":
                    seen.append(client.get(f"/api/runs/{r['id']}/edges", params={"top_k": 1}).status_code)

    watcher = threading.Thread(target=watch)
    watcher.start()
    for _ in range(15):
        assert client.post("/api/circuits", json=eap_ig_file(3, 3)).status_code == 201
    stop.set()
    watcher.join()
    assert seen and set(seen) == {200}


def test_queue_cap_answers_429_with_retry_after(tmp_path):
    with TestClient(create_app(settings(tmp_path, max_queued=1))) as c:
        ds = upload(c, tiny_records(12))
        running = start_run(c, ds["id"], **SLOW)
        wait(c, running["id"], until=("running",))
        queued = start_run(c, ds["id"])
        r = c.post("/api/runs", json={"model": "tiny", "dataset_id": ds["id"]})
        assert r.status_code == 429 and r.json()["detail"]["field"] == "queue" and int(r.headers["retry-after"]) > 0
        assert "EDGEWISE_MAX_QUEUED" in r.json()["detail"]["message"]
        assert c.get("/api/health").json()["queued"] >= 1
        for run in (queued, running):
            c.post(f"/api/runs/{run['id']}/cancel")
        wait(c, running["id"])
        assert c.post("/api/runs", json={"model": "tiny", "dataset_id": ds["id"]}).status_code == 202


def test_dtype_only_where_the_device_has_it_and_models_cached_per_dtype(tmp_path):
    with TestClient(create_app(settings(tmp_path))) as c:
        h = c.get("/api/health").json()
        assert h["dtypes"] == ["float32"] and h["ray"] is None
        ds = upload(c)
        r = c.post("/api/runs", json={"model": "tiny", "dataset_id": ds["id"], "dtype": "bfloat16"})
        assert r.status_code == 422 and r.json()["detail"]["field"] == "dtype" and "cuda" in r.json()["detail"]["message"]
        assert c.post("/api/runs", json={"model": "tiny", "dataset_id": ds["id"], "dtype": "float64"}).status_code == 422
    loaded = []
    s = settings(tmp_path / "cuda", device="cuda")  # the tiny catalog loads on the CPU whatever the name says
    load = s.catalog.load_model
    s.catalog.load_model = lambda name, device, dtype=None, progress=None: (loaded.append((name, dtype)),
                                                                            load(name, device, dtype, progress))[1]
    app = create_app(s)
    with TestClient(app) as c:
        assert c.get("/api/health").json()["dtypes"] == ["float32", "bfloat16", "float16"]
        ds = upload(c)
        run = wait(c, start_run(c, ds["id"], dtype="bfloat16")["id"])
        assert run["dtype"] == "bfloat16" and run["status"] == "done", run
        wait(c, start_run(c, ds["id"])["id"])  # float32: the upload's model, already loaded
    assert loaded == [("tiny", torch.float32), ("tiny", torch.bfloat16)] and app.state.ctx.engine.models.loads == 2


def test_strict_bodies_refuse_what_used_to_be_coerced(client):
    ds = upload(client)
    for change, field in (({"batch_size": True}, "batch_size"), ({"batch_size": "4"}, "batch_size"),
                          ({"ig_steps": 2.0}, "ig_steps"), ({"nonsense": 1}, "nonsense")):
        r = client.post("/api/runs", json={"model": "tiny", "dataset_id": ds["id"], **change})
        assert r.status_code == 422 and r.json()["detail"]["field"] == field, r.text
    bad = eap_ig_file(2, 2)
    bad["edges"][next(iter(bad["edges"]))]["in_graph"] = "no"
    r = client.post("/api/circuits", json=bad)
    assert r.status_code == 422 and r.json()["detail"]["field"] == "edges" and "in_graph" in r.text
    assert client.get("/api/runs").json() == []


def multipart(model: str, filename: str, first: bytes, filler: bytes, n: int) -> tuple[dict, object]:
    """(headers, body generator) of a multipart upload made chunk by chunk: the client never holds it whole."""
    boundary = uuid.uuid4().hex

    def chunks():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n"
               f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
               "Content-Type: text/csv\r\n\r\n").encode() + first
        for _ in range(n):
            yield filler
        yield f"\r\n--{boundary}--\r\n".encode()

    return {"content-type": f"multipart/form-data; boundary={boundary}"}, chunks()


def asgi_post(app, path: str, headers: dict, chunks) -> tuple[int, dict]:
    """POST straight through the ASGI interface, the body as a stream of chunks (as a server passes it):
    (status, JSON body). TestClient would read the whole body first."""
    messages = iter(chunks)
    sent: list = []

    async def receive():
        chunk = next(messages, None)
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1")] + [(k.encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


def test_uploads_are_streamed_not_buffered(tmp_path):
    """An 8 MB CSV of 1.1 M pairs: refused at pair 1,001 (EDGEWISE_MAX_PAIRS) while Python never holds
    the body whole (the body limit used to buffer it, then the route read it into bytes, then every row)."""
    app = create_app(settings(tmp_path, max_pairs=1000))
    headers, body = multipart("tiny", "p.csv", b"clean,corrupted\n", b"[1],[2]\n" * 8192, 140)
    tracemalloc.start()
    status, answer = asgi_post(app, "/api/datasets", headers, body)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert status == 422 and answer["detail"]["row"] == 1001 and "limit is 1000" in answer["detail"]["message"]
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MB of Python memory for an 8 MB upload"


def test_upload_cap_applies_to_a_streamed_multipart_body(tmp_path):
    with TestClient(create_app(settings(tmp_path, max_upload_mb=1))) as c:
        headers, body = multipart("tiny", "p.csv", b"clean,corrupted\n", b"[1],[2]\n" * 8192, 40)
        r = c.post("/api/datasets", content=body, headers=headers)
        assert r.status_code == 413 and r.json()["detail"]["field"] == "body"
        assert c.get("/api/health").status_code == 200


def test_unusable_data_directory_is_a_clear_error_not_a_traceback(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="must be a writable directory"):
        Store(blocker / "data")
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "edgewise.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a database"):
        Store(garbage)
    assert cli.main(["serve", "--data", str(garbage)]) == 2  # `edgewise serve` says so and exits 2
    assert "edgewise: error: cannot use the data directory" in capsys.readouterr().err
    monkeypatch.setenv("EDGEWISE_MAX_QUEUED", "many")
    assert cli.main(["serve", "--data", str(tmp_path / "fine")]) == 2
    assert "EDGEWISE_MAX_QUEUED='many' is not a number" in capsys.readouterr().err


def test_older_data_directory_is_migrated(tmp_path):
    """A store written before scored/curve_complete/name/dtype existed opens, its finished runs intact."""
    db = sqlite3.connect(tmp_path / "edgewise.sqlite3")
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO runs (id, method, status, scores, curve, n_edges, created_at) "
               "VALUES ('old1', 'eap', 'done', x'000000000000f03f', '[]', 1, 1.0)")
    db.commit()
    db.close()
    run = Store(tmp_path).get_run("old1")
    assert run["scored"] and run["curve_complete"] and run["dtype"] == "float32" and run["name"] is None


OLD_SCHEMA = """
CREATE TABLE datasets (id TEXT PRIMARY KEY, model TEXT NOT NULL, sha256 TEXT NOT NULL, filename TEXT,
    n_pairs INTEGER NOT NULL, has_answers INTEGER NOT NULL, tokens TEXT NOT NULL, preview TEXT NOT NULL,
    warnings TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE runs (id TEXT PRIMARY KEY, model TEXT, dataset_id TEXT, method TEXT NOT NULL, metric TEXT, ablation TEXT,
    batch_size INTEGER, ig_steps INTEGER, status TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0, stage TEXT,
    error TEXT, warnings TEXT NOT NULL DEFAULT '[]', cfg TEXT, n_edges INTEGER, scores BLOB, in_graph BLOB,
    curve TEXT, meta TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, started_at REAL, finished_at REAL);
"""


class Recorder:
    """What Engine.execute reports through (the job queue's Job), recorded."""

    def __init__(self):
        self.reports, self.points, self.scores = [], [], None

    def report(self, fraction, stage=None, detail=None):
        self.reports.append((fraction, stage, detail))

    def scored(self, cfg, scores, warnings, n_points):
        self.scores, self.n_points = scores, n_points

    def curve_point(self, point, index, total):
        self.points.append((index, total, point["k"]))

    def mib(self, scores):
        self.mib_scores = scores


def test_a_run_reports_model_loading_then_scores_then_each_curve_point(app, client):
    ds = upload(client)
    ctx = app.state.ctx
    run = ctx.store.create_run(model="tiny", dataset_id=ds["id"], method="eap", metric="logit_diff",
                               ablation="resample", batch_size=4, ig_steps=5)
    ctx.engine.models._models.clear()  # the run loads its model
    job = Recorder()
    ctx.engine.execute(run, job)
    stages = [stage for _, stage, _ in job.reports]
    # the tiny catalog's loader reports "weights" halfway; the page shows it as the stage's detail
    assert ("loading model", "weights") in [(s, d) for _, s, d in job.reports]
    assert stages.index("loading model") < stages.index("attribution") < stages.index("faithfulness curve") < \
        stages.index("mib")
    fractions = [f for f, _, _ in job.reports]
    assert fractions == sorted(fractions) and fractions[-1] <= 1
    ks = ctx.engine.curve_ks(len(job.scores))
    assert job.points == [(i, len(ks), k) for i, k in enumerate(ks)] and job.n_points == len(ks)
    assert {"cpr", "cmd", "points", "points_abs"} <= set(job.mib_scores)


def test_concurrency_runs_several_jobs_at_once_sharing_the_device(tmp_path):
    """EDGEWISE_CONCURRENCY=2: two runs are `running` together (the second waits for the device inside
    its job, as runs on a cluster will not need to); both finish with the scores a lone run gets."""
    with TestClient(create_app(settings(tmp_path, concurrency=2, curve_points=2))) as c:
        ds = upload(c, tiny_records(6))
        a = start_run(c, ds["id"], metric="test_slow", batch_size=1, method="eap-ig-inputs", ig_steps=2)
        b = start_run(c, ds["id"], metric="test_slow", batch_size=1, method="eap-ig-inputs", ig_steps=2)
        seen = 0
        while seen < 2 and c.get(f"/api/runs/{b['id']}").json()["status"] != "done":
            seen = max(seen, c.get("/api/health").json()["running"])
        assert seen == 2
        ra, rb = wait(c, a["id"]), wait(c, b["id"])
        assert ra["status"] == rb["status"] == "done"
        assert c.get(f"/api/runs/{a['id']}/edges").json() == c.get(f"/api/runs/{b['id']}/edges").json()
