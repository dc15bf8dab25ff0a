// The page's entry point: wires the form (form.js: data → run), the run's view (explorer.js: graph,
// slider, chart) and the URL.
// Test hook: window.__edgewise exposes the cytoscape instance and the view state (tests, bench).
import * as api from "./api.js";
import { app } from "./app.js";
import { graphView, initExplorer, onPopState, openRun } from "./explorer.js";
import { fillForm, wireForm } from "./form.js";
import { toast } from "./panels.js";
import { thresholdFor } from "./select.js";
import { decodeState } from "./state.js";
import { load } from "./vendor.js";

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- test hook
window.__edgewise = {
  ready: false,
  get cy() { return graphView()?.cy; },
  get runId() { return app.run?.id ?? null; },
  get k() { return app.k; },
  get nTotal() { return app.nTotal; },
  /** |score| an edge must reach to be drawn at the current threshold */
  get threshold() { return thresholdFor(app.loaded, app.k); },
  get node() { return app.node; },
  shown: () => app.shown.map((e) => e.name),
  drawn: () => graphView()?.drawn() ?? [],
};

// ---------------------------------------------------------------- start
async function start() {
  const [cytoscape, Plotly] = await Promise.all([load("cytoscape"), load("Plotly")]);
  initExplorer(cytoscape, Plotly);
  wireForm({ openRun });

  api.health().then((h) => {
    $("server-info").textContent = [h.version && `v${h.version}`, h.device && `device: ${h.device}`].filter(Boolean).join(" · ");
  }).catch(() => { $("server-info").textContent = "server unreachable"; });

  await fillForm();

  const st = decodeState(window.location.search);
  if (st.run) await openRun(st.run, { k: st.k, node: st.node, push: false });
  window.addEventListener("popstate", () => onPopState(decodeState(window.location.search)));
}

start().catch((e) => {
  console.error(e);
  toast(`The page failed to start: ${e.message}`, "error");
});
