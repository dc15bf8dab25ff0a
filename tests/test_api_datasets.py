"""POST /api/datasets: uploads in every format, the content hash, and every bad input as a 4xx naming it."""
import csv
import io
import json

import pytest
from api_support import make_model, settings, tiny_records, upload
from fastapi.testclient import TestClient

import edgewise as ew
from edgewise.server import create_app


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(settings(tmp_path, max_upload_mb=0.05))) as c:
        yield c


def to_csv(records) -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["clean", "corrupted", "answer", "wrong_answer"])
    for r in records:
        w.writerow([json.dumps(r["clean"]), json.dumps(r["corrupted"]), json.dumps([r["answer"]]),
                    json.dumps([r["wrong_answer"]])])
    return out.getvalue().encode()


def multipart(client, data: bytes, filename="pairs.csv", model="tiny"):
    form = {"model": model} if model is not None else {}
    return client.post("/api/datasets", files={"file": (filename, data)}, data=form)


def test_json_upload_answers_id_count_preview_and_hash(client):
    records = tiny_records(7)
    ds = upload(client, records)
    assert ds["count"] == 7 and ds["model"] == "tiny" and ds["has_answers"] and not ds["existing"]
    assert ds["preview"] == records[:5]
    assert ds["sha256"] == ew.PromptPairs.from_records(make_model(), records).sha256()
    assert client.get(f"/api/datasets/{ds['id']}").json()["count"] == 7


def test_same_pairs_twice_is_one_dataset_whatever_the_format(client):
    records = tiny_records(5)
    first = upload(client, records)
    again = upload(client, records)
    as_csv = multipart(client, to_csv(records))
    as_jsonl = multipart(client, "\n".join(json.dumps(r) for r in records).encode(), "pairs.jsonl")
    assert as_csv.status_code == as_jsonl.status_code == 201, as_csv.text
    assert first["id"] == again["id"] == as_csv.json()["id"] == as_jsonl.json()["id"]
    assert again["existing"] and as_csv.json()["existing"]
    assert len(client.get("/api/datasets").json()) == 1
    other = upload(client, tiny_records(5, seed=9))
    assert other["id"] != first["id"] and len(client.get("/api/datasets").json()) == 2


def test_identical_pair_is_a_warning_not_an_error(client):
    records = tiny_records(3)
    records[1] = {**records[1], "corrupted": records[1]["clean"]}
    ds = upload(client, records)
    assert ds["warnings"] and "row 2" in ds["warnings"][0]


def bad_rows():
    r = tiny_records(3)
    short = [dict(x) for x in r]
    short[1]["corrupted"] = short[1]["corrupted"][:-1]
    multi = [dict(x) for x in r]
    multi[2]["answer"] = [1, 2]
    return short, multi


@pytest.mark.parametrize("name, data, filename, row, field, words", [
    ("malformed csv", b"clean,corrupted,answer,wrong_answer\n[1],[2],[3],[4],[5]\n", "p.csv", 1, "file", "cells"),
    ("malformed json", b'[{"clean": [1, 2], ', "p.json", None, "file", "invalid JSON"),
    ("malformed jsonl", b'{"clean": [1], "corrupted": [2]}\n{"clean": [1\n', "p.jsonl", 2, "file", "invalid JSON"),
    ("wrong columns", b"prompt,other\n[1],[2]\n", "p.csv", 1, "clean", "missing"),
    ("missing column", b"clean,answer,wrong_answer\n\"[1, 2]\",[3],[4]\n", "p.csv", 1, "corrupted", "missing"),
    ("non-utf8", b"clean,corrupted\n\xff\xfe[1],[2]\n", "p.csv", None, "file", "UTF-8"),
    ("empty file", b"", "p.csv", None, "file", "empty"),
    ("whitespace only", b"  \n\n ", "p.jsonl", None, "file", "empty"),
    ("token outside vocab", b'[{"clean": [1, 99], "corrupted": [1, 2], "answer": 1, "wrong_answer": 2}]', "p.json",
     1, "clean", "vocabulary"),
    ("text without tokenizer", b'[{"clean": "hello", "corrupted": "hullo", "answer": 1, "wrong_answer": 2}]',
     "p.json", 1, "clean", "no tokenizer"),
    ("header only", b"clean,corrupted,answer,wrong_answer\n", "p.csv", None, "file", "no prompt pairs"),
])
def test_bad_files_are_422_naming_the_problem(client, name, data, filename, row, field, words):
    r = multipart(client, data, filename)
    assert r.status_code == 422, (name, r.text)
    detail = r.json()["detail"]
    assert words in detail["message"], (name, detail)
    assert detail.get("row") == row and detail.get("field") == field, (name, detail)
    assert client.get("/api/health").status_code == 200


def test_length_mismatch_and_multi_token_answer_name_row_and_field(client):
    short, multi = bad_rows()
    r = client.post("/api/datasets", json={"model": "tiny", "pairs": short})
    d = r.json()["detail"]
    assert r.status_code == 422 and (d["row"], d["field"]) == (2, "corrupted") and "tokens" in d["message"]
    r = client.post("/api/datasets", json={"model": "tiny", "pairs": multi})
    d = r.json()["detail"]
    assert r.status_code == 422 and (d["row"], d["field"]) == (3, "answer") and "single token" in d["message"]
    r = multipart(client, to_csv(multi))  # the same problem in a CSV cell
    assert r.status_code == 422 and r.json()["detail"]["row"] == 3


@pytest.mark.parametrize("model, status, words", [
    ("no-such-model", 422, "unknown model"),
    ("../../etc/passwd", 400, "outside the allowed model directories"),
    ("/tmp/some-checkpoint", 400, "refused"),
    ("~/models/x", 400, "refused"),
    ("", 422, "empty"),
])
def test_bad_model_names(client, model, status, words):
    r = client.post("/api/datasets", json={"model": model, "pairs": tiny_records(2)})
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]["message"] and r.json()["detail"]["field"] == "model"


def test_model_path_inside_allowed_dir_is_accepted_as_a_name(tmp_path):
    allowed = tmp_path / "ckpts"
    (allowed / "m").mkdir(parents=True)
    with TestClient(create_app(settings(tmp_path, model_dirs=(allowed,)))) as c:
        r = c.post("/api/datasets", json={"model": str(allowed / "m"), "pairs": tiny_records(2)})
        assert r.status_code == 422 and "config.json" in r.json()["detail"]["message"]  # allowed, but not a checkpoint
        r = c.post("/api/datasets", json={"model": str(allowed / ".." / "elsewhere"), "pairs": tiny_records(2)})
        assert r.status_code == 400
        (allowed / "m" / "config.json").write_text(json.dumps({"n_layer": 2, "n_head": 4, "n_embd": 32}))
        listed = {m["name"]: m for m in c.get("/api/models").json()}
        local = listed[str((allowed / "m").resolve())]
        assert (local["source"], local["n_layers"], local["n_heads"], local["d_model"]) == ("local", 2, 4, 32)
        r = c.post("/api/datasets", json={"model": str(allowed / "m"), "pairs": tiny_records(2)})
        assert r.status_code == 422 and "cannot be loaded" in r.json()["detail"]["message"]  # the test catalog's loader


def test_upload_cap_is_413_with_and_without_content_length(client):
    big = b"clean,corrupted\n" + b"[1, 2],[1, 3]\n" * 5000  # ~70 kB, cap is 0.05 MB
    r = multipart(client, big)
    assert r.status_code == 413 and "EDGEWISE_MAX_UPLOAD_MB" in r.json()["detail"]["message"]

    def chunks():  # no Content-Length: the body arrives chunked
        for _ in range(20):
            yield b" " * 4096

    r = client.post("/api/datasets", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert client.get("/api/health").status_code == 200


def test_request_shape_errors(client):
    r = client.post("/api/datasets", files={"other": ("p.csv", b"x")}, data={"model": "tiny"})
    assert r.status_code == 422 and r.json()["detail"]["field"] == "file"
    r = multipart(client, to_csv(tiny_records(2)), model=None)
    assert r.status_code == 422 and r.json()["detail"]["field"] == "model"
    r = client.post("/api/datasets", content=b"clean,corrupted", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = client.post("/api/datasets", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]["message"]
    r = client.post("/api/datasets", json={"model": "tiny", "pairs": {"a": 1}})
    assert r.status_code == 422 and r.json()["detail"]["field"] == "pairs"
    r = client.post("/api/datasets", json={"model": "tiny", "pairs": ["just a string"]})
    assert r.status_code == 422 and r.json()["detail"]["row"] == 1
    assert client.get("/api/datasets/nope").status_code == 404


def test_too_many_pairs(tmp_path):
    with TestClient(create_app(settings(tmp_path, max_pairs=3))) as c:
        r = c.post("/api/datasets", json={"model": "tiny", "pairs": tiny_records(4)})
        assert r.status_code == 422 and "limit is 3" in r.json()["detail"]["message"]
