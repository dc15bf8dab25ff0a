// node --test: reading pairs on the page (as edgewise.data does), the page's own flags, and why
// "Run attribution" may not start.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { checkPairs, formatIssue, normalizeRecord, parseCsv, parseRecords, runBlocker } from "../../frontend/js/pairs.js";

test("CSV: quoted cells keep commas, quotes and newlines; CRLF; blank lines skipped", () => {
  assert.deepEqual(parseCsv('a,b\r\n"x, y","say ""hi"""\n\n"multi\nline",z\n'),
    [["a", "b"], ["x, y", 'say "hi"'], ["multi\nline", "z"]]);
  assert.deepEqual(parseCsv("a,b\n1,\n"), [["a", "b"], ["1", ""]]);
  assert.throws(() => parseCsv('a\n"open'), /unterminated/);
});

test("the Paste pairs placeholder is valid CSV: one record, four fields", () => {
  const html = readFileSync(new URL("../../frontend/index.html", import.meta.url), "utf8");
  const raw = /<textarea id="pairs-text"[^>]*placeholder='([^']*)'/.exec(html)[1];
  const text = raw.replace(/&#10;/g, "\n").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"');
  const recs = parseRecords(text, "pasted.csv");
  assert.equal(recs.length, 1);
  assert.deepEqual(Object.keys(recs[0]), ["clean", "corrupted", "answer", "wrong_answer"]);
  assert.match(recs[0].clean, /, John gave a drink to$/);
  assert.deepEqual(checkPairs(recs), []);
});

test("JSONL, JSON lists, {pairs}, auto-circuit {prompts} with one-element answer lists", () => {
  assert.equal(parseRecords('{"clean": "a"}\n{"clean": "b"}\n').length, 2);
  assert.equal(parseRecords('[{"clean": "a"}]').length, 1);
  assert.equal(parseRecords('{"pairs": [{"clean": "a"}, {"clean": "b"}]}').length, 2);
  const [p] = parseRecords('{"prompts": [{"clean": "c", "corrupt": "d", "answers": [" x"], "wrong_answers": [" y"]}]}');
  assert.deepEqual(normalizeRecord(p), { clean: "c", corrupted: "d", answer: " x", wrong_answer: " y" });
  assert.deepEqual(normalizeRecord({ Label: [7], distractor: [8] }), { answer: [7], wrong_answer: [8] }, "token-id lists stay lists");
  assert.throws(() => parseRecords(""), /empty/);
  assert.throws(() => parseRecords('{"x": 1}', "a.json"), /pairs/);
});

test("answer == wrong_answer is flagged per row (1-based) and field; different answers are not", () => {
  const recs = parseRecords([
    "clean,corrupted,answer,wrong_answer",
    'a b,a c, Mary, John',
    'a b,a c, Mary, Mary',
    'a b,a c,Mary, Mary',
    'a b,a c, John, John',
  ].join("\n"), "x.csv");
  const issues = checkPairs(recs);
  assert.deepEqual(issues.map((i) => [i.row, i.field]), [[2, "wrong_answer"], [4, "wrong_answer"]]);
  assert.match(formatIssue(issues[0]), /^row 2, field "wrong_answer": same as answer \(" Mary"\)/);
  assert.deepEqual(checkPairs([{ clean: [1, 2], corrupted: [1, 3], answer: [5], wrong_answer: [5] }]).map((i) => i.row), [1]);
  assert.deepEqual(checkPairs([{ clean: "a", corrupted: "b" }]), [], "no answers (kl): nothing to compare");
});

test("runBlocker: why Run attribution is disabled, in order of what to do first", () => {
  const ok = { running: false, source: { text: "x" }, checking: false, dataset: { model: "m" }, model: "m" };
  assert.equal(runBlocker(ok), null);
  assert.match(runBlocker({ ...ok, source: null, dataset: null }), /No prompt pairs yet/);
  assert.match(runBlocker({ ...ok, checking: true }), /Checking/);
  assert.match(runBlocker({ ...ok, dataset: null }), /rejected/);
  assert.match(runBlocker({ ...ok, dataset: { model: "other" } }), /another model/);
  assert.match(runBlocker({ ...ok, running: true }), /in progress/);
});
