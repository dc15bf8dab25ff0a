// node --test: the view state in the URL (permalinks) and the text helpers.
import assert from "node:assert/strict";
import { test } from "node:test";

import { capLines, edgesShown, formatDetail, formatFaith, formatScore, guessFormat } from "../../frontend/js/format.js";
import { decodeState, encodeState, tokenFrom } from "../../frontend/js/state.js";

const EMPTY = { run: null, k: null, rule: null, t: null, connected: false, cmp: null, node: null };

test("encode → decode round-trips run, k and node", () => {
  const st = { ...EMPTY, run: "3ddab4f76fae", k: 120, node: "a9.h6" };
  const search = encodeState(st);
  assert.equal(search, "?run=3ddab4f76fae&k=120&node=a9.h6");
  assert.deepEqual(decodeState(search), st);
  assert.deepEqual(decodeState(search.slice(1)), st);
});

test("the selection rule, threshold, connected and compare round-trip", () => {
  for (const t of [0.0123, 1e-7, 3, 0.1 + 0.2, 2.5e-12]) {
    const st = { ...EMPTY, run: "r1", rule: "abs", t, connected: true, cmp: "r2", node: "m0" };
    const back = decodeState(encodeState(st));
    assert.deepEqual(back, st, `t=${t}`);
    assert.equal(back.t, t, "the threshold comes back to the last bit (the same edges pass)");
  }
  // k is written only for the top-k rule; t only for the threshold rule
  assert.equal(encodeState({ run: "r", rule: "abs", t: 0.5, k: 7 }), "?run=r&rule=abs&t=0.5");
  assert.equal(encodeState({ run: "r", rule: "own", k: 7 }), "?run=r&rule=own");
  assert.equal(encodeState({ run: "r", rule: "top_k", k: 7, connected: true }), "?run=r&rule=top_k&k=7&connected=1");
  assert.equal(encodeState({ run: "r", cmp: "r" }), "?run=r", "a run is not compared with itself");
});

test("foreign parameters (the token) survive; own ones are replaced", () => {
  const s = encodeState({ run: "r2", k: 7 }, "?token=s3cret&run=r1&k=5&node=m0&cmp=r9&rule=abs&t=1&connected=1");
  const p = new URLSearchParams(s);
  assert.equal(p.get("token"), "s3cret");
  assert.equal(p.get("run"), "r2");
  assert.equal(p.get("k"), "7");
  for (const key of ["node", "cmp", "rule", "t", "connected"]) assert.equal(p.get(key), null, key);
  assert.equal(tokenFrom(s), "s3cret");
  assert.equal(tokenFrom("?run=x"), null);
});

test("no run: nothing of the view is written; bad values decode to null", () => {
  assert.equal(encodeState({ run: null, k: 5, node: "m0" }), "");
  assert.equal(encodeState({ run: null }, "?token=t"), "?token=t");
  assert.deepEqual(decodeState("?run=../etc&k=-3&node=drop%20table"), EMPTY);
  assert.deepEqual(decodeState("?run=abc&k=1.5"), { ...EMPTY, run: "abc" });
  assert.deepEqual(decodeState("?run=abc&rule=best&t=-1&connected=yes&cmp=../x"), { ...EMPTY, run: "abc" });
  assert.deepEqual(decodeState("?run=abc&t=NaN"), { ...EMPTY, run: "abc" });
  assert.deepEqual(decodeState(""), EMPTY);
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

test("edgesShown says 1 edge, N edges; formatFaith never prints -0.000", () => {
  assert.equal(edgesShown(1), "1 edge shown");
  assert.equal(edgesShown(0), "0 edges shown");
  assert.equal(edgesShown(2000), "2000 edges shown");
  assert.equal(formatFaith(-0.0001), "0.000");
  assert.equal(formatFaith(-0.0005), "-0.001");
  assert.equal(formatFaith(0.91649), "0.916");
  assert.equal(formatFaith(null), "n/a");
  assert.equal(formatFaith(NaN), "n/a");
});

test("capLines lists at most cap and counts the rest", () => {
  const lines = Array.from({ length: 23 }, (_, i) => `row ${i + 1}: bad`);
  const c = capLines(lines, 10);
  assert.equal(c.shown.length, 10);
  assert.equal(c.shown[9], "row 10: bad");
  assert.equal(c.more, 13);
  assert.equal(c.total, 23);
  assert.deepEqual(capLines(["one"], 10), { shown: ["one"], more: 0, total: 1 });
});
