// node --test: the view state in the URL (permalinks) and the text helpers.
import assert from "node:assert/strict";
import { test } from "node:test";

import { formatDetail, formatScore, guessFormat } from "../../frontend/js/format.js";
import { decodeState, encodeState, tokenFrom } from "../../frontend/js/state.js";

test("encode → decode round-trips run, k and node", () => {
  const st = { run: "3ddab4f76fae", k: 120, node: "a9.h6" };
  const search = encodeState(st);
  assert.equal(search, "?run=3ddab4f76fae&k=120&node=a9.h6");
  assert.deepEqual(decodeState(search), st);
  assert.deepEqual(decodeState(search.slice(1)), st);
});

test("foreign parameters (the token) survive; own ones are replaced", () => {
  const s = encodeState({ run: "r2", k: 7 }, "?token=s3cret&run=r1&k=5&node=m0");
  const p = new URLSearchParams(s);
  assert.equal(p.get("token"), "s3cret");
  assert.equal(p.get("run"), "r2");
  assert.equal(p.get("k"), "7");
  assert.equal(p.get("node"), null);
  assert.equal(tokenFrom(s), "s3cret");
  assert.equal(tokenFrom("?run=x"), null);
});

test("no run: nothing of the view is written; bad values decode to null", () => {
  assert.equal(encodeState({ run: null, k: 5, node: "m0" }), "");
  assert.equal(encodeState({ run: null }, "?token=t"), "?token=t");
  assert.deepEqual(decodeState("?run=../etc&k=-3&node=drop%20table"), { run: null, k: null, node: null });
  assert.deepEqual(decodeState("?run=abc&k=1.5"), { run: "abc", k: null, node: null });
  assert.deepEqual(decodeState(""), { run: null, k: null, node: null });
});

test("formatDetail: the API's {message, row, field}, pydantic lists, strings", () => {
  assert.deepEqual(formatDetail({ message: "9 tokens, clean has 8", row: 4, field: "corrupted" }),
    ['row 4, field "corrupted": 9 tokens, clean has 8']);
  assert.deepEqual(formatDetail({ message: 'row 4, field "corrupted": 9 tokens, clean has 8' }),
    ['row 4, field "corrupted": 9 tokens, clean has 8']);
  assert.deepEqual(formatDetail({ message: 'row 4, field "corrupted": 9 tokens, clean has 8', row: 4, field: "corrupted" }),
    ['row 4, field "corrupted": 9 tokens, clean has 8'], "not named twice");
  assert.deepEqual(formatDetail([{ loc: ["body", "top_k"], msg: "must be ≥ 0" }]), ["top_k: must be ≥ 0"]);
  assert.deepEqual(formatDetail("nope"), ["nope"]);
  assert.deepEqual(formatDetail(null), []);
});

test("formatScore: three significant digits, exponents for tiny values", () => {
  assert.equal(formatScore(0.123456), "0.123");
  assert.equal(formatScore(-7.3214), "-7.32");
  assert.equal(formatScore(2.4e-6), "2.40e-6");
  assert.equal(formatScore(0), "0");
  assert.equal(formatScore(1), "1");
  assert.equal(formatScore(null), "—");
});

test("guessFormat: pasted JSON, JSONL or CSV", () => {
  assert.equal(guessFormat('[{"clean": "a"}]'), "json");
  assert.equal(guessFormat('{"pairs": []}'), "json");
  assert.equal(guessFormat('{"clean": "a"}\n{"clean": "b"}\n'), "jsonl");
  assert.equal(guessFormat("clean,corrupted\na,b"), "csv");
});
