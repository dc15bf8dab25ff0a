// node --test: the per-pair table's query, changed token positions and numbers.
import assert from "node:assert/strict";
import { test } from "node:test";

import { PAIRS_SHOWN, changedPositions, formatNormalized, pairsCaption, pairsQuery, showToken } from "../../frontend/js/perpair.js";

test("the /pairs query is the view's selection, as /circuit takes it, with the row limit", () => {
  assert.deepEqual(pairsQuery({ rule: "top_k", k: 40, t: 0, connected: false }), { top_k: 40, limit: PAIRS_SHOWN });
  assert.deepEqual(pairsQuery({ rule: "top_k", k: 40, connected: true }, 5), { top_k: 40, connected: true, limit: 5 });
  assert.deepEqual(pairsQuery({ rule: "abs", k: 0, t: 0.25, connected: false }), { min_abs_score: 0.25, limit: PAIRS_SHOWN });
  assert.deepEqual(pairsQuery({ rule: "own", connected: true }), { own: true, connected: true, limit: PAIRS_SHOWN });
});

test("changed positions: where the corrupted prompt's token differs, any length", () => {
  assert.deepEqual(changedPositions(["<bos>", " Mary", " and", " John"], ["<bos>", " Bob", " and", " John"]), [1]);
  assert.deepEqual(changedPositions(["a", "b"], ["a", "b"]), []);
  assert.deepEqual(changedPositions(["a", "b", "c"], ["x", "b"]), [0, 2]);
});

test("tokens keep their spaces; line breaks and tabs show", () => {
  assert.equal(showToken(" Mary"), " Mary");
  assert.equal(showToken("\n"), "⏎");
  assert.equal(showToken("\t x"), "⇥ x");
  assert.equal(showToken(17), "17");
});

test("a pair's faithfulness: 2 decimals, never -0.00, n/a when undefined", () => {
  assert.equal(formatNormalized(0.4567), "0.46");
  assert.equal(formatNormalized(-0.001), "0.00");
  assert.equal(formatNormalized(-1.5), "-1.50");
  assert.equal(formatNormalized(null), "n/a");
  assert.equal(formatNormalized(NaN), "n/a");
});

test("the caption says which pairs the rows are and the circuit's size", () => {
  assert.equal(pairsCaption(16, 16, 40), "16 pairs, worst first, with the circuit of 40 edges");
  assert.equal(pairsCaption(200, 2000, 1), "the 200 worst of 2,000 pairs, with the circuit of 1 edge");
  assert.equal(pairsCaption(1, 1, 3), "1 pair, worst first, with the circuit of 3 edges");
});
