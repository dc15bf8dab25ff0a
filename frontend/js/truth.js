// The known circuit of a bundled task (GET /api/tasks/{name}/circuit), laid over a run of its
// model: which task applies, its edges not shown (drawn as ghosts), precision/recall and the ROC.
import * as api from "./api.js";
import { parseEdge } from "./layout.js";
import { precisionRecall, roc } from "./stats.js";

const cache = new Map();  // task name → Promise of its edge names

/** The bundled task whose model the run used and that ships a known circuit, or null. */
export function truthTask(tasks, run) {
  const model = run?.model ?? run?.meta?.model;
  return tasks.find((t) => t.has_circuit && t.model === model) ?? null;
}

/** {task, names: Set} for the run, or null when no task applies or the circuit cannot be read. */
export async function loadTruth(tasks, run) {
  const task = truthTask(tasks, run);
  if (!task) return null;
  if (!cache.has(task.name)) cache.set(task.name, api.taskCircuit(task.name).then((c) => c.edges));
  try {
    return { task: task.name, names: new Set(await cache.get(task.name)), on: true };
  } catch (e) {
    cache.delete(task.name);
    return null;
  }
}

/** Known edges not in `drawn` (a Set of names), with their scores from `all` when known. */
export function ghostEdges(truth, drawn, scores = new Map()) {
  return [...truth].filter((n) => !drawn.has(n)).map((name) => ({ name, ...parseEdge(name), score: scores.get(name) ?? 0 }));
}

/** Precision/recall of the shown circuit, and its (FPR, TPR) point for the ROC chart. */
export function truthStats(shownNames, truth, curve) {
  const pr = precisionRecall(shownNames, truth);
  const point = curve ? { fpr: (shownNames.length - pr.tp) / curve.nNeg, tpr: pr.tp / curve.nPos } : null;
  return { ...pr, point };
}

/** The ROC of the run's full ranking (every edge) against the known circuit. */
export function truthRoc(all, truth) {
  return roc(all, truth);
}
