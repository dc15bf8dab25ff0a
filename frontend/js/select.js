// Pure: which edges the view keeps, and how the "Edge threshold" slider maps to a number of edges.
//
// Edges arrive sorted by |score| descending (GET /api/runs/{id}/edges). Keeping the top k is the
// threshold |score| ≥ |score of the k-th edge|. The slider is logarithmic in k: position p of
// SLIDER_STEPS maps to k = round(kMax^(p/SLIDER_STEPS)), so a step near the left adds one edge and
// a step near the right adds hundreds — the scale at which circuits are read.
import { formatScore } from "./format.js";
import { connectedEdges } from "./prune.js";

/** Edges handed to cytoscape at once: more is unusable (seconds per frame at 32k). */
export const MAX_SHOWN = 2000;
export const SLIDER_STEPS = 1000;

/** Sort a copy by |score| descending; ties keep their order (stable), as the server ranks them. */
export function sortByAbs(edges) {
  return edges.map((e, i) => [e, i])
    .sort((a, b) => Math.abs(b[0].score) - Math.abs(a[0].score) || a[1] - b[1])
    .map(([e]) => e);
}

/** The largest k the slider reaches. */
export function sliderMax(nEdges, cap = MAX_SHOWN) {
  return Math.max(0, Math.min(nEdges, cap));
}

/** Slider position (0…steps) → number of edges kept (1…kMax), log scale. */
export function sliderToK(pos, kMax, steps = SLIDER_STEPS) {
  if (kMax <= 0) return 0;
  const t = Math.min(Math.max(pos / steps, 0), 1);
  return Math.min(kMax, Math.max(1, Math.round(Math.pow(kMax, t))));
}

/** Number of edges → the slider position that shows it (inverse of sliderToK up to rounding). */
export function kToSlider(k, kMax, steps = SLIDER_STEPS) {
  if (kMax <= 1) return steps;
  const kk = Math.min(Math.max(k, 1), kMax);
  return Math.round((steps * Math.log(kk)) / Math.log(kMax));
}

/** The next distinct k one keyboard step away (the log map has plateaus of equal k). */
export function stepK(k, dir, kMax) {
  return Math.min(kMax, Math.max(1, k + (dir > 0 ? 1 : -1)));
}

/** The k edges kept: the top k of an |score|-sorted list. */
export function selectTop(sorted, k) {
  return sorted.slice(0, Math.max(0, k));
}

/** The |score| an edge must reach to be kept when k are kept (0 when none or all). */
export function thresholdFor(sorted, k) {
  if (k <= 0 || sorted.length === 0) return Infinity;
  return Math.abs(sorted[Math.min(k, sorted.length) - 1].score);
}

/** Every edge with |score| ≥ minAbs (the score-threshold reading of the slider). */
export function selectByScore(sorted, minAbs) {
  let n = 0;
  while (n < sorted.length && Math.abs(sorted[n].score) >= minAbs) n++;
  return sorted.slice(0, n);
}

// ---------------------------------------------------------------- selection rules
// A selection {rule, k, t, connected}: rule "top_k" keeps the k edges of largest |score|, "abs" every
// edge with |score| ≥ t, "own" an imported file's in_graph edges; connected then keeps only edges on
// an input → logits path (prune.js), as the API's `connected` does.

/** The edges a selection keeps, in ranking order. own: the file's edges (rule "own"). */
export function selectEdges(sorted, sel, own = null) {
  let picked;
  if (sel.rule === "own") picked = sortByAbs(own ?? []);
  else if (sel.rule === "abs") picked = selectByScore(sorted, sel.t ?? Infinity);
  else picked = selectTop(sorted, sel.k ?? 0);
  return sel.connected ? connectedEdges(picked) : picked;
}

/** A key that is equal exactly when two selections keep the same edges (caches of faithfulness). */
export function selectionKey(sel) {
  const v = sel.rule === "abs" ? sel.t : sel.rule === "own" ? "" : sel.k;
  return `${sel.rule}:${v}:${sel.connected ? 1 : 0}`;
}

/** The selection as the circuit JSON and the API write it: {top_k} or {min_abs_score}, plus connected. */
export function selectionSpec(sel, ownSpec = {}) {
  const spec = sel.rule === "own" ? { ...ownSpec } : sel.rule === "abs" ? { min_abs_score: sel.t } : { top_k: sel.k };
  if (sel.connected) spec.connected = true;
  return spec;
}

/** The |score| range the threshold slider spans: the top edge down to the kMax-th (above 0). */
export function scoreRange(sorted, kMax) {
  const n = Math.min(kMax, sorted.length);
  if (!n) return { hi: 0, lo: 0 };
  const hi = Math.abs(sorted[0].score);
  let lo = Math.abs(sorted[n - 1].score);
  if (!(lo > 0)) {  // zero scores at the end: stop at the smallest non-zero one
    const nz = sorted.slice(0, n).map((e) => Math.abs(e.score)).filter((x) => x > 0);
    lo = nz.length ? nz[nz.length - 1] : hi;
  }
  return { hi, lo };
}

/** Slider position (0…steps) → |score| threshold, log scale from hi (left: fewest edges) to lo. */
export function sliderToScore(pos, { hi, lo }, steps = SLIDER_STEPS) {
  if (!(hi > 0)) return 0;
  const f = Math.min(Math.max(pos / steps, 0), 1);
  if (f === 0) return hi;
  if (f === 1) return lo;
  return hi * Math.pow(lo / hi, f);
}

/** |score| threshold → slider position (inverse of sliderToScore up to rounding). */
export function scoreToSlider(t, { hi, lo }, steps = SLIDER_STEPS) {
  if (!(hi > 0) || !(lo > 0) || hi === lo) return steps;
  const tt = Math.min(Math.max(t, lo), hi);
  return Math.max(0, Math.round((steps * Math.log(tt / hi)) / Math.log(lo / hi)));  // never -0
}

/** The threshold one edge more (dir > 0) or one edge fewer than t keeps, within the first kMax. */
export function stepScore(sorted, t, dir, kMax) {
  const n = Math.min(selectByScore(sorted, t).length, kMax);
  const next = dir > 0 ? Math.min(n + 1, kMax) : Math.max(n - 1, 1);
  return sorted.length ? Math.abs(sorted[Math.min(next, sorted.length) - 1].score) : 0;
}

/** The slider's scale over the number of edges kept (1…kMax, log). */
export function kScale(kMax, steps = SLIDER_STEPS) {
  return {
    kind: "k", empty: kMax <= 0, first: Math.min(1, kMax), last: kMax,
    toValue: (pos) => sliderToK(pos, kMax, steps),
    toPos: (k) => kToSlider(k, kMax, steps),
    step: (k, dir) => stepK(k, dir, kMax),
    jump: (k, dir) => sliderToK(kToSlider(k, kMax, steps) + dir * steps / 10, kMax, steps),
    clamp: (k) => Math.min(Math.max(Math.round(k), Math.min(1, kMax)), kMax),
    label: (k) => `${k} ${k === 1 ? "edge" : "edges"}`,
  };
}

/** The slider's scale over the |score| threshold (the top edge's |score| down to the kMax-th, log). */
export function scoreScale(sorted, kMax, steps = SLIDER_STEPS) {
  const range = scoreRange(sorted, kMax);
  return {
    kind: "score", empty: !(range.hi > 0), first: range.hi, last: range.lo, range,
    toValue: (pos) => sliderToScore(pos, range, steps),
    toPos: (t) => scoreToSlider(t, range, steps),
    step: (t, dir) => stepScore(sorted, t, dir, kMax),
    jump: (t, dir) => sliderToScore(scoreToSlider(t, range, steps) + dir * steps / 10, range, steps),
    clamp: (t) => Math.min(Math.max(t, range.lo), range.hi),
    label: (t) => `|score| ≥ ${formatScore(t)}`,
  };
}

/** A sensible first view: a tenth of the edges, at least 5, at most 200 (and at most kMax). */
export function defaultK(nEdges, kMax = sliderMax(nEdges)) {
  return Math.min(kMax, Math.max(5, Math.min(200, Math.round(nEdges / 10))));
}

/** What to add to and remove from the drawn set (a Set of names) to draw `next` (edges). */
export function diffShown(shown, next) {
  const keep = new Set(next.map((e) => e.name));
  const add = next.filter((e) => !shown.has(e.name));
  const remove = [...shown].filter((n) => !keep.has(n));
  return { add, remove };
}

/** Nodes touched by at least one edge of `edges` (objects with src, dst). */
export function activeNodes(edges) {
  const s = new Set();
  for (const e of edges) { s.add(e.src); s.add(e.dst); }
  return s;
}

/**
 * A circuit JSON (edgewise.circuit/v1) holding exactly `shownNames` as in_graph edges: the server's
 * file for the run with every edge's in_graph flag set from the view, and nodes recomputed from it.
 */
export function circuitForView(circuit, shownNames, extra = {}) {
  const shown = new Set(shownNames);
  const edges = {};
  for (const [name, info] of Object.entries(circuit.edges || {})) {
    edges[name] = { ...info, in_graph: shown.has(name) };
  }
  for (const name of shown) if (!(name in edges)) edges[name] = { score: 0, in_graph: true };
  const nodes = {};
  for (const name of Object.keys(circuit.nodes || {})) nodes[name] = { in_graph: false };
  for (const name of shown) {
    const i = name.indexOf("->");
    const src = name.slice(0, i), dst = name.slice(i + 2).replace(/<[qkv]>$/, "");
    nodes[src] = { in_graph: true };
    nodes[dst] = { in_graph: true };
  }
  return { ...circuit, ...extra, nodes, edges };
}
