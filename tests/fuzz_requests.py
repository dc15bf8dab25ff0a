"""Malformed requests for every route (test_api_hardening.py's fuzz, against a server with a token: the
client sends it, a few requests drop or spoil it): each one must answer 4xx naming its field. Generated from valid requests by replacing one field with a value of the wrong type or
range, dropping or adding fields, breaking the JSON, the content type, the path or the headers."""
from __future__ import annotations

import json
import random

RUN_BAD = {
    "model": [None, True, 5, [], {}, "", "a\x00b", "x" * 600, "/etc/passwd", "gpt-17", "../../x"],
    "dataset_id": [None, 5, [], "nope", "a\x00b", "x" * 200],
    "method": [None, 5, "magic", [], "EAP"],
    "metric": [None, 5, [], {}, "accuracy", "a\x00"],
    "ablation": [None, 3, "noise"],
    "batch_size": [True, 1.5, "4", -1, 0, 10**30, None, []],
    "ig_steps": [True, 0, 201, "5", 2.5],
    "dtype": ["bfloat16", "float64", 16, None],
    "name": [5, "x" * 201, "a\x00b", ["a"], True],
}
BROKEN_JSON = [b"{", b"\xff\xfe", b'{"a":', b"NaN", b"[" * 50_000, b'{"model": "tiny"} trailing', b""]
NON_OBJECTS = ["[]", '"text"', "5", "null", "true"]


def tiny_circuit() -> dict:
    """A valid circuit of the tiny test model's shape (2 layers × 2 heads, MLPs)."""
    return {"cfg": {"n_layers": 2, "n_heads": 2, "d_model": 16, "parallel_attn_mlp": False},
            "edges": {"input->a0.h0<q>": {"score": 0.5, "in_graph": True}, "a0.h1->m0": {"score": -1, "in_graph": False}},
            "nodes": {"input": {"in_graph": True}, "a0.h0": {"in_graph": True}}}


def circuit_variants() -> list[tuple[str, bytes]]:
    out = []

    def put(name, path, value):
        d = tiny_circuit()
        target = d
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        out.append((name, json.dumps(d).encode()))

    for v in (5, None, [], "cfg", {"n_layers": 2}, {"n_heads": 2}):
        put(f"cfg={v!r}", ["cfg"], v)
    for v in (-1, 0, 1.5, "2", True, None, [], 129, 10**12):
        put(f"n_layers={v!r}", ["cfg", "n_layers"], v)
    for v in (0, -3, "2", False, 1000):
        put(f"n_heads={v!r}", ["cfg", "n_heads"], v)
    for key, v in (("d_model", -5), ("d_model", "x"), ("parallel_attn_mlp", 1), ("attn_only", "yes"),
                   ("attn_only", None)):
        put(f"cfg.{key}={v!r}", ["cfg", key], v)
    put("48x64 graph", ["cfg"], {"n_layers": 48, "n_heads": 64})
    put("74x16 graph", ["cfg"], {"n_layers": 74, "n_heads": 16})
    for v in ([], 5, "edges", None, {"bogus": {}}, {"input->a9.h0<q>": {}}, {"m1->a0.h0<q>": {}},
              {"input->a0.h0<q>": 5}, {"input->a0.h0<q>": {"score": "x"}}, {"input->a0.h0<q>": {"score": True}},
              {"input->a0.h0<q>": {"in_graph": "no"}}, {"input->a0.h0<q>": {"in_graph": 1}},
              {"input->a0.h0<q>": {"score": []}}, {"a\x00->m0": {}}):
        put(f"edges={str(v)[:30]}", ["edges"], v)
    put("edges missing", ["edges"], KeyError)
    put("cfg missing", ["cfg"], KeyError)
    for key, vals in (("model", [5, [], {}, "a\x00b", "x" * 501]), ("metric", [[], {}, 5]), ("method", [5, []]),
                      ("ablation", [[], 7]), ("format", [5]),
                      ("dataset", [5, "x", {"sha256": []}, {"sha256": 5}, {"n_pairs": -1}, {"n_pairs": "3"}]),
                      ("selection", [5, {"top_k": -1}, {"top_k": "3"}, {"min_abs_score": -1}]),
                      ("faithfulness", [5, {"normalized": "x"}, {"metric_clean": []}]),
                      ("nodes", [5, [], {"zz": {}}, {"input": 5}, {"input": {"in_graph": "no"}}, {"m7": {}}])):
        for v in vals:
            put(f"{key}={str(v)[:30]}", [key], v)
    raw = json.dumps(tiny_circuit())
    out.append(("score Infinity", raw.replace("0.5", "Infinity").encode()))
    out.append(("score NaN", raw.replace("0.5", "NaN").encode()))
    out.append(("score -Infinity", raw.replace("0.5", "-Infinity").encode()))
    out.append(("score 1e400", raw.replace("0.5", "1e400").encode()))
    out.append(("n_layers 1e400", raw.replace('"n_layers": 2', '"n_layers": 1e400').encode()))
    out.append(("n_layers 5000 digits", raw.replace('"n_layers": 2', '"n_layers": ' + "9" * 5000).encode()))
    for body in NON_OBJECTS:
        out.append((f"circuit {body}", body.encode()))
    return out


def malformed_requests(dataset_id: str, run_id: str, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    reqs: list[dict] = []

    def add(name, method, url, **kw):
        reqs.append({"name": name, "method": method, "url": url, **kw})

    def json_req(name, method, url, body, **kw):
        add(name, method, url, content=json.dumps(body).encode(), headers={"content-type": "application/json"}, **kw)

    # POST /api/runs: one field wrong at a time; unknown fields; not an object; broken JSON; wrong types
    good_run = {"model": "tiny", "dataset_id": dataset_id, "method": "eap", "metric": "logit_diff", "batch_size": 4}
    for field, values in RUN_BAD.items():
        for v in values:
            json_req(f"run {field}={str(v)[:20]!r}", "POST", "/api/runs", {**good_run, field: v})
    for field in ("model", "dataset_id"):
        json_req(f"run without {field}", "POST", "/api/runs", {k: v for k, v in good_run.items() if k != field})
    json_req("run extra field", "POST", "/api/runs", {**good_run, "top_k": 5})
    for body in NON_OBJECTS:
        add(f"run body {body}", "POST", "/api/runs", content=body.encode(), headers={"content-type": "application/json"})
    for i, raw in enumerate(BROKEN_JSON):
        add(f"run broken json {i}", "POST", "/api/runs", content=raw, headers={"content-type": "application/json"})
    add("run text/plain", "POST", "/api/runs", content=json.dumps(good_run).encode(),
        headers={"content-type": "text/plain"})
    add("run multipart", "POST", "/api/runs", files={"file": ("x.json", b"{}")})

    # POST /api/datasets
    good_pairs = [{"clean": [1, 2, 3], "corrupted": [1, 2, 4], "answer": 5, "wrong_answer": 6}]
    for v in (None, 5, [], "", "a\x00b", "nope", "/etc"):
        json_req(f"dataset model={v!r}", "POST", "/api/datasets", {"model": v, "pairs": good_pairs})
    for v in (None, 5, "x", {"a": 1}, [5], [[1]], [{"clean": 1}], [{}], [{"clean": [1], "corrupted": [1, 2]}],
              [{"clean": [1], "corrupted": [99]}], [{"clean": "hello", "corrupted": "hullo"}],
              [{**good_pairs[0], "answer": [1, 2]}], [{**good_pairs[0], "answer": True}]):
        json_req(f"dataset pairs={str(v)[:30]}", "POST", "/api/datasets", {"model": "tiny", "pairs": v})
    json_req("dataset extra field", "POST", "/api/datasets", {"model": "tiny", "pairs": good_pairs, "x": 1})
    json_req("dataset filename NUL", "POST", "/api/datasets", {"model": "tiny", "pairs": good_pairs, "filename": "a\x00"})
    for i, raw in enumerate(BROKEN_JSON):
        add(f"dataset broken json {i}", "POST", "/api/datasets", content=raw, headers={"content-type": "application/json"})
    add("dataset text/plain", "POST", "/api/datasets", content=b"clean,corrupted", headers={"content-type": "text/plain"})
    add("dataset multipart no file", "POST", "/api/datasets", files={"other": ("p.csv", b"x")}, data={"model": "tiny"})
    add("dataset multipart no model", "POST", "/api/datasets", files={"file": ("p.csv", b"clean,corrupted\n[1],[2]\n")})
    for name, blob in (("binary", bytes(range(256)) * 4), ("csv cells", b"clean,corrupted\n[1],[2],[3]\n"),
                       ("csv bad ids", b"clean,corrupted\n[1,],[2]\n"), ("jsonl", b'{"clean": [1]}\n{"clean"\n'),
                       ("deep json", b"[" * 50_000), ("empty", b""), ("header only", b"clean,corrupted\n"),
                       ("NUL csv", b"clean,corrupted\n\x00,\x00\n")):
        for ext in ("csv", "json", "jsonl", "txt"):
            if rng.random() < 0.6:
                add(f"dataset file {name}.{ext}", "POST", "/api/datasets", files={"file": (f"p.{ext}", blob)},
                    data={"model": "tiny"})

    # POST /api/circuits
    for name, body in circuit_variants():
        add(f"circuit {name}", "POST", "/api/circuits", content=body, headers={"content-type": "application/json"})
    ok = json.dumps(tiny_circuit()).encode()
    add("circuit text/plain", "POST", "/api/circuits", content=ok, headers={"content-type": "text/plain"})
    add("circuit empty", "POST", "/api/circuits", content=b"", headers={"content-type": "application/json"})
    add("circuit deep", "POST", "/api/circuits", content=b"[" * 100_000, headers={"content-type": "application/json"})
    add("circuit multipart no file", "POST", "/api/circuits", files={"x": ("c.json", ok)})
    add("circuit unknown model", "POST", "/api/circuits", content=ok, params={"model": "gpt-17"},
        headers={"content-type": "application/json"})
    add("circuit NUL model", "POST", "/api/circuits", content=ok, params={"model": "a\x00b"},
        headers={"content-type": "application/json"})
    add("circuit unknown dataset", "POST", "/api/circuits", content=ok, params={"dataset_id": "nope"},
        headers={"content-type": "application/json"})

    # a run's results
    base = f"/api/runs/{run_id}"
    for body in ({}, {"top_k": -1}, {"top_k": True}, {"top_k": "3"}, {"top_k": 1.5}, {"edges": "x"}, {"edges": [5]},
                 {"edges": ["bogus"]}, {"edges": ["m1->a0.h0<q>"]}, {"top_k": 3, "edges": []},
                 {"min_abs_score": -1}, {"min_abs_score": "x"}, {"own": True}, {"own": "yes"}, {"x": 1}, [], 5):
        json_req(f"faithfulness {str(body)[:30]}", "POST", f"{base}/faithfulness", body)
    add("faithfulness broken", "POST", f"{base}/faithfulness", content=b"{", headers={"content-type": "application/json"})
    json_req("faithfulness unknown run", "POST", "/api/runs/nope/faithfulness", {"top_k": 1})
    for path in ("edges", "circuit"):
        for params in ({"top_k": -1}, {"top_k": "abc"}, {"top_k": 1.5}, {"min_abs_score": -1},
                       {"min_abs_score": "abc"}, {"min_abs_score": "nan"}, {"own": "maybe"}, {"own": "true"},
                       {"top_k": 10**20}):
            add(f"{path} {params}", "GET", f"{base}/{path}", params=params)
        add(f"{path} unknown run", "GET", f"/api/runs/nope/{path}")
    add("curve unknown run", "GET", "/api/runs/nope/curve")
    add("events unknown run", "GET", "/api/runs/nope/events")
    add("run NUL id", "GET", "/api/runs/%00")

    # rename, delete, cancel, listings, tasks, paths and methods
    for body in ({"name": 5}, {"name": "x" * 201}, {"name": "a\x00"}, {}, {"name": "ok", "x": 1}, [], {"name": True}):
        json_req(f"rename {str(body)[:30]}", "PATCH", base, body)
    json_req("rename unknown run", "PATCH", "/api/runs/nope", {"name": "x"})
    add("rename broken", "PATCH", base, content=b"{", headers={"content-type": "application/json"})
    add("delete unknown run", "DELETE", "/api/runs/nope")
    add("delete unknown dataset", "DELETE", "/api/datasets/nope")
    add("cancel a done run", "POST", f"{base}/cancel")
    add("cancel unknown run", "POST", "/api/runs/nope/cancel")
    for url, params in (("/api/runs", {"limit": 0}), ("/api/runs", {"limit": -1}), ("/api/runs", {"limit": "abc"}),
                        ("/api/runs", {"limit": 100_000}), ("/api/runs", {"offset": -1}),
                        ("/api/datasets", {"limit": 0}), ("/api/datasets", {"offset": "x"}),
                        ("/api/tasks/nope/pairs", {}), ("/api/tasks/tiny-task/pairs", {"format": "xml"}),
                        ("/api/tasks/%00/pairs", {}), ("/api/datasets/nope", {}), ("/api/nope", {}),
                        ("/js/%00", {}), ("/vendor/nope.js", {}), ("/css/../../etc/passwd", {})):
        add(f"GET {url} {params}", "GET", url, params=params)
    for method, url in (("PUT", "/api/runs"), ("DELETE", "/api/health"), ("POST", "/api/health"),
                        ("PATCH", "/api/datasets/x"), ("PUT", f"{base}/edges")):
        add(f"{method} {url}", method, url)

    # cross-site writes and foreign hosts
    for origin in ("http://evil.example", "null", "http://127.0.0.1.evil.example"):
        add(f"origin {origin}", "POST", "/api/circuits", content=ok,
            headers={"content-type": "text/plain", "origin": origin})
    add("cross-site cancel", "POST", f"{base}/cancel", headers={"sec-fetch-site": "cross-site"})
    add("no token", "GET", "/api/runs", headers={"authorization": ""})
    add("wrong token", "POST", "/api/circuits", content=ok,
        headers={"authorization": "Bearer nope", "content-type": "application/json"})
    add("query token on a POST", "POST", "/api/circuits", content=ok, params={"token": "x"},
        headers={"authorization": "", "content-type": "application/json"})
    rng.shuffle(reqs)
    return reqs
