// Compare the open run (A) with another run of the same model (B): which runs qualify, B's
// circuit at the size of A's, the three edge classes, top-k Jaccard and Spearman of all scores.
import * as api from "./api.js";
import { curvePoints } from "./chart.js";
import { parseEdge } from "./layout.js";
import { MAX_SHOWN, selectByScore, sortByAbs } from "./select.js";
import { connectedEdges } from "./prune.js";
import { compareClasses, jaccard, spearman } from "./stats.js";

/** Runs A can be compared with: finished, same model (so the same edges), not A itself. */
export function compareCandidates(runs, a) {
  if (!a) return [];
  const model = a.model ?? a.meta?.model;
  return runs.filter((r) => r.status === "done" && String(r.id) !== String(a.id) && model && (r.model ?? r.meta?.model) === model);
}

export function runLabel(r) {
  const what = r.method === "imported" ? `imported${r.meta?.method ? ` ${r.meta.method}` : ""}` : r.method;
  const ablation = r.ablation && r.ablation !== "resample" && r.method !== "imported" ? r.ablation : null;  // resample: the default
  return [r.name, what, r.metric, ablation, `#${r.id}`].filter(Boolean).join(" · ");
}

const withEnds = (e) => (e.src && e.dst ? e : { ...e, ...parseEdge(e.name) });

/** Load run B: its top edges, every edge (for Spearman) and its curve. */
export async function loadCompare(id) {
  const [run, top, all, curve] = await Promise.all([
    api.getRun(id), api.edges(id, { top_k: MAX_SHOWN }), api.edges(id), api.curve(id).then(curvePoints, () => []),
  ]);
  const loaded = sortByAbs(top.edges.map(withEnds));
  return { run, loaded, all: all.edges, curve, maxAbs: loaded.length ? Math.abs(loaded[0].score) : 0 };
}

/**
 * B's circuit at the size of A's: A's rule keeps n edges before the connected prune (k; the count
 * passing |score| ≥ t; the file's own edges), so B keeps its top n, then the same prune.
 */
export function compareShown(bLoaded, aLoaded, sel, ownCount = 0) {
  const n = sel.rule === "abs" ? selectByScore(aLoaded, sel.t).length : sel.rule === "own" ? ownCount : sel.k;
  const top = bLoaded.slice(0, n);
  return sel.connected ? connectedEdges(top) : top;
}

/** Classes, Jaccard of the two circuits shown, and (once) Spearman over every edge both runs score. */
export function compareStats(aShown, bShown, cmp, aAll) {
  const an = aShown.map((e) => e.name), bn = bShown.map((e) => e.name);
  const classes = compareClasses(an, bn);
  if (cmp.rho === undefined && aAll) {
    const toMap = (list) => new Map(list.map((e) => [e.name, e.score]));
    cmp.rho = spearman(toMap(aAll), toMap(cmp.all));
  }
  return { classes, jaccard: jaccard(an, bn), rho: cmp.rho };
}
