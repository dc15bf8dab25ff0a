// The open run's faithfulness curve and MIB scores beside the chart. A finished run's come from
// GET /curve and GET /mib; a live run's fill in from its events (`curve` one point each, then `mib`),
// which form.js's follower hands over through `app.live` (kept even before the run is open).
import * as api from "./api.js";
import { app } from "./app.js";
import { curvePoints } from "./chart.js";
import { formatFaith } from "./format.js";

const $ = (id) => document.getElementById(id);
const MIB_HELP = "MIB's circuit-localization scores over circuits of 0.1 % … 100 % of the edges, pruned to connected edges: "
  + "CPR = area under faithfulness with edges by signed score (higher is better), "
  + "CMD = area under |1 − faithfulness| with edges by |score| (lower is better).";

let chart, onCurve = () => {};

/** chart: the faithfulness Chart; onChange(first): what redraws the slider marker (and, first: the dot)
 * after new points. */
export function initCurveView(c, onChange) {
  chart = c;
  onCurve = onChange;
  $("mib").title = MIB_HELP;
}

const same = (a, b) => a != null && b != null && String(a) === String(b);

/** A follower's event for run `id`, remembered for when (or while) that run is open. */
export function liveEvent(id, kind, data) {
  if (!same(app.live?.id, id)) app.live = { id, points: [], mib: null, total: null };
  if (kind === "curve") {
    app.live.points.push(data);
    app.live.total = data.total ?? app.live.total;
  } else if (kind === "mib") app.live.mib = data;
  if (!same(app.run?.id, id)) return;
  if (kind === "curve") merge([data]).then(() => { app.curveLog.push(app.curve.points.size); onCurve(false); });
  else if (kind === "mib") showMib(data);
}

/** A newly opened run: its stored curve (curveP: GET /curve's raw `points`, or an Error) and MIB. */
export async function startCurve(run, curveP) {
  app.curve = { id: run.id, points: new Map(), total: null };
  app.curveLog = [];  // points on the chart after each live `curve` event (the test hook reads it)
  $("chart-note").textContent = "loading…";
  showMib(null);
  const pts = await curveP;
  if (!same(app.run?.id, run.id)) return;
  const live = same(app.live?.id, run.id) ? app.live : null;
  if (pts instanceof Error && !live?.points.length) {
    app.curve.error = pts.message;
  }
  await merge([...(Array.isArray(pts) ? pts : []), ...(live?.points ?? [])], true);
  onCurve(true);
  loadMib(run, live);
}

async function loadMib(run, live) {
  if (live?.mib) return showMib(live.mib);
  if (run.method === "imported" || run.status !== "done") return;  // a live run's `mib` event brings them
  try {
    const m = await api.mib(run.id);
    if (same(app.run?.id, run.id)) showMib(m);
  } catch { /* 409: not computed (yet); a live run's `mib` event brings it */ }
}

/** The run has ended: its complete curve and MIB scores, from the server. */
export async function finishCurve(run) {
  if (!same(app.run?.id, run.id)) return;
  app.run = { ...app.run, status: run.status, curve_complete: run.curve_complete, warnings: run.warnings ?? app.run.warnings };
  const pts = await api.curve(run.id).then((c) => c.points ?? [], () => []);
  if (!same(app.run?.id, run.id)) return;
  await merge(pts);
  onCurve(false);
  loadMib(run, null);
}

/** Add raw curve points (the API's, or `curve` events) to the open run's curve and redraw it; first: a
 * new run's (the old run's dot goes). */
async function merge(points, first = false) {
  const c = app.curve;
  for (const p of curvePoints(points)) c.points.set(p.k, p);
  for (const p of points) if (p.total) c.total = p.total;
  const list = [...c.points.values()].sort((a, b) => a.k - b.k);
  const running = app.run?.status === "running" || app.run?.status === "queued";
  const imported = app.run?.method === "imported";
  let note;
  if (list.length && running) note = `${list.length}${c.total ? ` of ${c.total}` : ""} points · computing…`;
  else if (list.length) note = `${list.length} points`;
  else note = running ? "computing the curve…" : imported ? "imported circuit: no curve stored"
    : c.error ? `no curve: ${c.error}` : "no curve for this run";
  $("chart-note").textContent = note;
  $("chart-note").title = list.length ? "each point: the top-k circuit by |score|; dotted line: the full model (faithfulness 1)" : "";
  const empty = running ? "the faithfulness curve is being computed…" : imported ? "no faithfulness curve stored for this run"
    : c.error ? `no curve: ${c.error}` : "no faithfulness curve stored for this run";
  if (first) await chart.setCurve(list, list.length ? null : empty);
  else await chart.setPoints(list, list.length ? null : empty);
}

/** CPR and CMD beside the chart (null hides them). */
export function showMib(m) {
  const el = $("mib");
  el.hidden = !m;
  if (!m) return;
  const num = (x) => (x === null || x === undefined || !Number.isFinite(x) ? "n/a" : formatFaith(x));
  $("mib-cpr").textContent = num(m.cpr);
  $("mib-cmd").textContent = num(m.cmd);
}
