// node --test: compare and known-circuit numbers against their textbook definitions.
import assert from "node:assert/strict";
import { test } from "node:test";

import { compareClasses, jaccard, precisionRecall, ranks, roc, spearman } from "../../frontend/js/stats.js";

const close = (a, b, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${a} != ${b}`);
const map = (xs) => new Map(xs.map((x, i) => [`e${i}`, x]));

test("ranks: ascending from 1, ties share their average", () => {
  assert.deepEqual(ranks([10, 30, 20]), [1, 3, 2]);
  assert.deepEqual(ranks([5, 1, 5, 5, 0]), [4, 2, 4, 4, 1]);
});

test("Spearman without ties is 1 − 6Σd²/(n(n²−1))", () => {
  const a = [0.3, -1.2, 2.5, 0.01, 7, -3, 0.5, 1.1];
  const b = [0.2, -0.1, 1.5, 0.4, 3, -2, -0.5, 0.9];
  const ra = ranks(a), rb = ranks(b), n = a.length;
  const d2 = ra.reduce((s, r, i) => s + (r - rb[i]) ** 2, 0);
  close(spearman(map(a), map(b)).rho, 1 - (6 * d2) / (n * (n * n - 1)));
  assert.equal(spearman(map(a), map(b)).n, n);
});

test("Spearman: monotone maps give ±1, ties by hand, only shared edges count", () => {
  const a = [1, 2, 3, 4, 5];
  close(spearman(map(a), map(a.map((x) => x ** 3))).rho, 1);
  close(spearman(map(a), map(a.map((x) => -Math.exp(x)))).rho, -1);
  // a = 1 2 3 4, b = 1 1 2 3 → ranks b = 1.5 1.5 3 4; r = Σ(da·db)/sqrt(Σda² Σdb²) = 4.5/sqrt(5 · 4.5)
  close(spearman(map([1, 2, 3, 4]), map([1, 1, 2, 3])).rho, 4.5 / Math.sqrt(5 * 4.5));
  const b = new Map([["e0", 1], ["e1", 2], ["x", 99]]);
  assert.equal(spearman(map([1, 2, 3]), b).n, 2);
  assert.equal(spearman(map([1, 1, 1]), map([1, 2, 3])).rho, null, "constant: undefined");
  assert.equal(spearman(map([1]), map([1])).rho, null);
});

test("compareClasses and Jaccard", () => {
  const c = compareClasses(["a", "b", "c", "d"], ["c", "d", "e"]);
  assert.deepEqual(c, { a: ["a", "b"], b: ["e"], both: ["c", "d"] });
  close(jaccard(["a", "b", "c", "d"], ["c", "d", "e"]), 2 / 5);
  assert.equal(jaccard([], []), null);
  assert.equal(jaccard(["a"], ["a"]), 1);
});

test("precision and recall of a shown set against a known circuit", () => {
  const pr = precisionRecall(["a", "b", "c", "x"], new Set(["a", "b", "c", "d", "e", "f"]));
  assert.equal(pr.tp, 3);
  close(pr.precision, 3 / 4);
  close(pr.recall, 3 / 6);
  assert.equal(precisionRecall([], new Set(["a"])).precision, null);
});

/** AUC as the probability that a random true edge outranks a random other one, a tie counting half. */
function mannWhitney(edges, truth) {
  const pos = edges.filter((e) => truth.has(e.name)).map((e) => Math.abs(e.score));
  const neg = edges.filter((e) => !truth.has(e.name)).map((e) => Math.abs(e.score));
  let s = 0;
  for (const p of pos) for (const n of neg) s += p > n ? 1 : p === n ? 0.5 : 0;
  return s / (pos.length * neg.length);
}

test("ROC AUC equals the Mann–Whitney probability (ties half), on random rankings with ties", () => {
  let seed = 3;
  const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  for (let rep = 0; rep < 40; rep++) {
    const n = 5 + Math.floor(rand() * 60);
    const edges = Array.from({ length: n }, (_, i) => ({ name: `e${i}`, score: Math.round((rand() - 0.5) * 8) / 4 }));
    const truth = new Set(edges.filter(() => rand() < 0.3).map((e) => e.name));
    if (truth.size === 0 || truth.size === n) continue;
    const r = roc(edges, truth);
    close(r.auc, mannWhitney(edges, truth), 1e-12);
    assert.deepEqual([r.fpr[0], r.tpr[0]], [0, 0]);
    assert.deepEqual([r.fpr.at(-1), r.tpr.at(-1)], [1, 1]);
    assert.equal(r.nPos + r.nNeg, n);
  }
});

test("ROC: a perfect ranking has AUC 1, a reversed one 0; noise below 1e-6·max counts as 0; one class → null", () => {
  const edges = [["a", 5], ["b", -4], ["c", 0.1], ["d", 0.01]].map(([name, score]) => ({ name, score }));
  assert.equal(roc(edges, new Set(["a", "b"])).auc, 1);
  assert.equal(roc(edges, new Set(["c", "d"])).auc, 0);
  // 1e-9 and 0 tie once the floor zeroes the first: the truth edge no longer outranks the other
  const tiny = [{ name: "t", score: 1e-9 }, { name: "z", score: 0 }, { name: "big", score: 1 }];
  assert.equal(roc(tiny, new Set(["t"])).auc, 0.5 * 0.5);
  assert.equal(roc(edges, new Set()), null);
  assert.equal(roc(edges, new Set(["a", "b", "c", "d"])), null);
});
