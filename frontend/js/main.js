// The page's entry point: wires the form (form.js: data → run), the past runs (runs.js), the run's
// view (explorer.js: graph, slider; curveview.js: chart, MIB; pairview.js: per-pair table; overlays.js:
// compare, known circuit), export (exporter.js), the keyboard (keys.js) and the URL.
// Test hook: window.__edgewise exposes the cytoscape instance and the view state (tests, bench).
import * as api from "./api.js";
import { app } from "./app.js";
import { closeRun, graphView, initExplorer, onDeleted, onEnd, onEvent, onPopState, onScored, openRun } from "./explorer.js";
import { currentSvg, wireExport } from "./exporter.js";
import { fillForm, wireForm } from "./form.js";
import { find, wireKeys } from "./keys.js";
import { fillCompare } from "./overlays.js";
import { toast } from "./panels.js";
import { wireRuns } from "./runs.js";
import { thresholdFor } from "./select.js";
import { decodeState } from "./state.js";
import { load } from "./vendor.js";

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- test hook
window.__edgewise = {
  ready: false,
  get cy() { return graphView()?.cy; },
  get runId() { return app.run?.id ?? null; },
  get k() { return app.sel.k; },
  get sel() { return { ...app.sel }; },
  get nTotal() { return app.nTotal; },
  /** |score| an edge must reach to be drawn at the current top-k threshold */
  get threshold() { return app.sel.rule === "abs" ? app.sel.t : thresholdFor(app.loaded, app.sel.k); },
  get node() { return app.node; },
  /** the open run's status when its graph was first drawn ("running": drawn at `scored`, before `done`) */
  get firstDraw() { return app.firstDraw ?? null; },
  /** points on the chart after each `curve` event of the open run while it computed */
  get curveLog() { return [...app.curveLog]; },
  /** the open run's curve points so far (k ascending) */
  get curve() { return app.curve ? [...app.curve.points.values()].sort((a, b) => a.k - b.k) : []; },
  get cursor() { return app.cursor; },
  /** compare: the names in each class, once B is loaded; else null */
  get compare() { return app.cmp?.shown ? { b: app.cmp.run.id, shownB: app.cmp.shown.map((e) => e.name) } : null; },
  get truth() { return app.truth ? { task: app.truth.task, auc: app.truth.roc?.auc ?? null, on: app.truth.on } : null; },
  shown: () => app.shown.map((e) => e.name),
  drawn: () => graphView()?.drawn() ?? [],
  svg: () => currentSvg(),
  find: (q) => find(q),
};

// ---------------------------------------------------------------- start
async function start() {
  const [cytoscape, Plotly] = await Promise.all([load("cytoscape"), load("Plotly")]);
  initExplorer(cytoscape, Plotly);
  wireForm({ onScored, onEvent, onEnd });
  wireRuns({ open: (id) => openRun(id), deleted: onDeleted, changed: fillCompare });
  wireExport();
  wireKeys();

  api.health().then((h) => {
    $("server-info").textContent = [h.version && `v${h.version}`, h.device && `device: ${h.device}`].filter(Boolean).join(" · ");
  }).catch(() => { $("server-info").textContent = "server unreachable"; });

  await fillForm();

  const st = decodeState(window.location.search);
  if (st.run) await openRun(st.run, { state: st, push: false });
  else closeRun();
  window.addEventListener("popstate", () => onPopState(decodeState(window.location.search)));
}

start().catch((e) => {
  console.error(e);
  toast(`The page failed to start: ${e.message}`, "error");
});
