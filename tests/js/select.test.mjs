// node --test: which edges the view keeps, and the slider's log scale.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  MAX_SHOWN, SLIDER_STEPS, activeNodes, circuitForView, defaultK, diffShown, kScale, kToSlider, scoreRange, scoreScale,
  scoreToSlider, selectByScore, selectEdges, selectTop, selectionKey, selectionSpec, sliderMax, sliderToK, sliderToScore,
  sortByAbs, stepK, stepScore, thresholdFor,
} from "../../frontend/js/select.js";

const E = (name, score) => {
  const [src, rest] = name.split("->");
  const m = /^(.*)<([qkv])>$/.exec(rest);
  return { name, src, dst: m ? m[1] : rest, qkv: m ? m[2] : null, score };
};
const EDGES = sortByAbs([
  E("input->a0.h0<q>", 0.1), E("a0.h0->logits", -0.9), E("input->m0", 0.5), E("a0.h0->m0", -0.5),
  E("m0->logits", 0.02), E("input->logits", 0.0),
]);

test("sortByAbs ranks by |score|, keeps the sign, and is stable on ties", () => {
  assert.deepEqual(EDGES.map((e) => e.score), [-0.9, 0.5, -0.5, 0.1, 0.02, 0]);
  assert.deepEqual(EDGES.slice(1, 3).map((e) => e.name), ["input->m0", "a0.h0->m0"]);  // input order on the tie
});

test("the top k edges pass the threshold and no other edge is above it", () => {
  for (let k = 1; k <= EDGES.length; k++) {
    const kept = selectTop(EDGES, k);
    const thr = thresholdFor(EDGES, k);
    assert.equal(kept.length, k);
    assert.ok(kept.every((e) => Math.abs(e.score) >= thr), `k=${k}: a kept edge is below ${thr}`);
    assert.ok(EDGES.slice(k).every((e) => Math.abs(e.score) <= thr), `k=${k}: a dropped edge is above ${thr}`);
  }
  assert.equal(thresholdFor(EDGES, 0), Infinity);
  assert.equal(thresholdFor(EDGES, 99), 0);
});

test("selectByScore keeps every edge with |score| ≥ the threshold, ties included", () => {
  assert.deepEqual(selectByScore(EDGES, 0.5).map((e) => e.name), ["a0.h0->logits", "input->m0", "a0.h0->m0"]);
  assert.equal(selectByScore(EDGES, 1).length, 0);
  assert.equal(selectByScore(EDGES, 0).length, EDGES.length);
});

test("the slider is logarithmic: both ends, the middle, monotone", () => {
  const kMax = 2000;
  assert.equal(sliderToK(0, kMax), 1);
  assert.equal(sliderToK(SLIDER_STEPS, kMax), kMax);
  assert.equal(sliderToK(SLIDER_STEPS / 2, kMax), Math.round(Math.sqrt(kMax)));  // 45, not 1000
  let prev = 0;
  for (let p = 0; p <= SLIDER_STEPS; p += 7) {
    const k = sliderToK(p, kMax);
    assert.ok(k >= prev, `not monotone at ${p}`);
    prev = k;
  }
  assert.equal(sliderToK(-5, kMax), 1);
  assert.equal(sliderToK(SLIDER_STEPS + 5, kMax), kMax);
  assert.equal(sliderToK(500, 0), 0);
});

test("kToSlider inverts sliderToK", () => {
  // small graphs: every k has a slider position
  for (const kMax of [1, 2, 29, 77]) {
    for (let k = 1; k <= kMax; k++) assert.equal(sliderToK(kToSlider(k, kMax), kMax), k, `kMax=${kMax} k=${k}`);
  }
  // large: every k the slider produces comes back exactly (permalinks); any other k to within one step
  const kMax = 2000;
  for (let p = 0; p <= SLIDER_STEPS; p++) {
    const k = sliderToK(p, kMax);
    assert.equal(sliderToK(kToSlider(k, kMax), kMax), k, `position ${p}`);
  }
  for (let k = 1; k <= kMax; k++) {
    const back = sliderToK(kToSlider(k, kMax), kMax);
    assert.ok(Math.abs(back - k) <= k * Math.log(kMax) / SLIDER_STEPS + 1, `k=${k} came back as ${back}`);
  }
  assert.equal(kToSlider(1, 2000), 0);
  assert.equal(kToSlider(2000, 2000), SLIDER_STEPS);
  assert.equal(kToSlider(5000, 2000), SLIDER_STEPS);  // clamped
});

test("at most MAX_SHOWN edges reach cytoscape", () => {
  assert.equal(MAX_SHOWN, 2000);
  assert.equal(sliderMax(32491), 2000);
  assert.equal(sliderMax(77), 77);
  assert.equal(sliderMax(0), 0);
  assert.equal(stepK(2000, 1, 2000), 2000);
  assert.equal(stepK(1, -1, 2000), 1);
  assert.equal(stepK(10, 1, 2000), 11);
});

test("defaultK: a tenth of the edges within [5, 200] and the slider's range", () => {
  assert.equal(defaultK(32491), 200);
  assert.equal(defaultK(770), 77);
  assert.equal(defaultK(29), 5);
  assert.equal(defaultK(3), 3);
});

test("diffShown adds only what is new and removes only what left", () => {
  const shown = new Set(["a", "b", "c"]);
  const { add, remove } = diffShown(shown, [{ name: "b" }, { name: "c" }, { name: "d" }]);
  assert.deepEqual(add.map((e) => e.name), ["d"]);
  assert.deepEqual(remove, ["a"]);
  const same = diffShown(shown, [{ name: "a" }, { name: "b" }, { name: "c" }]);
  assert.equal(same.add.length + same.remove.length, 0);
});

test("activeNodes: the endpoints of kept edges (q/k/v slots folded into their head)", () => {
  assert.deepEqual([...activeNodes(selectTop(EDGES, 2))].sort(), ["a0.h0", "input", "logits", "m0"]);
  assert.deepEqual([...activeNodes([E("input->a0.h0<q>", 1)])].sort(), ["a0.h0", "input"]);
});

test("circuitForView: exactly the shown edges in_graph, nodes recomputed, scores kept", () => {
  const server = {
    format: "edgewise.circuit/v1", cfg: { n_layers: 1, n_heads: 1 }, model: "m",
    nodes: { input: { in_graph: true }, "a0.h0": { in_graph: true }, m0: { in_graph: true }, logits: { in_graph: true } },
    edges: Object.fromEntries(EDGES.map((e, i) => [e.name, { score: e.score, in_graph: i < 4 }])),
  };
  const shown = ["a0.h0->logits", "input->a0.h0<q>"];
  const out = circuitForView(server, shown, { selection: { top_k: 2 } });
  assert.deepEqual(Object.keys(out.edges).filter((n) => out.edges[n].in_graph).sort(), [...shown].sort());
  assert.equal(Object.keys(out.edges).length, EDGES.length);
  assert.equal(out.edges["input->m0"].score, 0.5);
  assert.deepEqual(out.nodes, { input: { in_graph: true }, "a0.h0": { in_graph: true }, m0: { in_graph: false }, logits: { in_graph: true } });
  assert.deepEqual(out.selection, { top_k: 2 });
  assert.equal(server.edges["input->m0"].in_graph, true, "the input is not modified");
});

test("selectEdges: top k, |score| ≥ t, the file's own edges, each then optionally pruned to connected", () => {
  const top3 = selectEdges(EDGES, { rule: "top_k", k: 3 });
  assert.deepEqual(top3.map((e) => e.name), ["a0.h0->logits", "input->m0", "a0.h0->m0"]);
  assert.deepEqual(selectEdges(EDGES, { rule: "abs", t: 0.1 }).map((e) => e.name), selectTop(EDGES, 4).map((e) => e.name));
  // top 3: a0.h0 has no input edge among them, so a0.h0->logits and a0.h0->m0 hang; input->m0 reaches no logits
  assert.deepEqual(selectEdges(EDGES, { rule: "top_k", k: 3, connected: true }), []);
  // top 5 adds input->a0.h0<q> and m0->logits: now every edge lies on input → … → logits
  assert.equal(selectEdges(EDGES, { rule: "top_k", k: 5, connected: true }).length, 5);
  const own = [E("m0->logits", 0.02), E("input->m0", 0.5)];
  assert.deepEqual(selectEdges(EDGES, { rule: "own", k: 1 }, own).map((e) => e.name), ["input->m0", "m0->logits"], "ranked by |score|");
});

test("selectionKey tells selections apart; selectionSpec writes them as the API does", () => {
  const keys = [{ rule: "top_k", k: 3 }, { rule: "top_k", k: 3, connected: true }, { rule: "abs", t: 0.1 }, { rule: "abs", t: 0.2 }, { rule: "own" }]
    .map(selectionKey);
  assert.equal(new Set(keys).size, keys.length);
  assert.equal(selectionKey({ rule: "own", k: 4 }), selectionKey({ rule: "own", k: 9 }), "k plays no part in own");
  assert.deepEqual(selectionSpec({ rule: "top_k", k: 40, connected: true }), { top_k: 40, connected: true });
  assert.deepEqual(selectionSpec({ rule: "abs", t: 0.01 }), { min_abs_score: 0.01 });
  assert.deepEqual(selectionSpec({ rule: "own" }, { top_k: 10 }), { top_k: 10 });
});

test("the |score| slider: log scale from the top edge down to the kMax-th, inverse, one edge per arrow", () => {
  const sorted = sortByAbs(Array.from({ length: 300 }, (_, i) => E(`input->m${i}`, (i % 2 ? -1 : 1) * Math.exp(-i / 30))));
  const range = scoreRange(sorted, 200);
  assert.equal(range.hi, 1);
  assert.equal(range.lo, Math.abs(sorted[199].score));
  assert.equal(sliderToScore(0, range), range.hi);
  assert.equal(sliderToScore(SLIDER_STEPS, range), range.lo);
  assert.ok(Math.abs(sliderToScore(SLIDER_STEPS / 2, range) - Math.sqrt(range.hi * range.lo)) < 1e-12, "geometric middle");
  for (let p = 0; p <= SLIDER_STEPS; p += 37) assert.equal(scoreToSlider(sliderToScore(p, range), range), p);
  // arrows: one edge more or fewer
  const t = Math.abs(sorted[49].score);
  assert.equal(selectByScore(sorted, stepScore(sorted, t, 1, 200)).length, 51);
  assert.equal(selectByScore(sorted, stepScore(sorted, t, -1, 200)).length, 49);
  assert.equal(selectByScore(sorted, stepScore(sorted, range.lo, 1, 200)).length, 200, "not past kMax");
  // zero scores at the end: the range stops at the smallest non-zero one
  const zeros = sortByAbs([E("input->m0", 2), E("input->m1", 0.5), E("input->m2", 0), E("input->m3", 0)]);
  assert.deepEqual(scoreRange(zeros, 4), { hi: 2, lo: 0.5 });
});

test("kScale and scoreScale clamp and label values", () => {
  const k = kScale(77);
  assert.equal(k.clamp(500), 77);
  assert.equal(k.clamp(0), 1);
  assert.equal(k.label(1), "1 edge");
  assert.equal(k.toValue(k.toPos(20)), 20);
  assert.ok(kScale(0).empty);
  const s = scoreScale(EDGES, 5);
  assert.equal(s.clamp(99), 0.9);
  assert.equal(s.clamp(0), 0.02);
  assert.equal(s.label(0.5), "|score| ≥ 0.5");
  assert.ok(scoreScale([], 0).empty);
});
