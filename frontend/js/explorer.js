// The explorer: opening a run, the threshold (k edges kept) and its faithfulness, the node panel,
// export (JSON, PNG) and import of a circuit.
import * as api from "./api.js";
import { app } from "./app.js";
import { Chart, curvePoints } from "./chart.js";
import { formatInt, formatScore } from "./format.js";
import { follow, modelName, refreshRuns, showRunError } from "./form.js";
import { GraphView } from "./graph.js";
import { edgeCount, inferConfig, parseEdge } from "./layout.js";
import { download, hideNodePanel, renderRuns, showNodePanel, showTooltip, toast } from "./panels.js";
import { MAX_SHOWN, circuitForView, defaultK, selectTop, sliderMax, sortByAbs, thresholdFor } from "./select.js";
import { ThresholdSlider } from "./slider.js";
import { encodeState } from "./state.js";

const $ = (id) => document.getElementById(id);

let view, chart, slider;

/** The graph view (for the test hook); undefined until initExplorer. */
export function graphView() { return view; }

/** Build the graph, chart and slider with their libraries, and wire the toolbar. */
export function initExplorer(cytoscape, Plotly) {
  view = new GraphView(cytoscape, $("graph"), {
    onNodeClick: (name) => openNode(name),
    onBackgroundClick: () => closeNode(),
    onHover: showTooltip,
  });
  chart = new Chart(Plotly, $("chart"));
  slider = new ThresholdSlider($("threshold"), { onInput: (k) => setK(k), onCommit: (k) => commitK(k) });
  wireExplorer();
}

/** Back/forward: reopen the run the URL names, or move the slider to its k. */
export function onPopState(s) {
  if (s.run && s.run !== String(app.run?.id)) openRun(s.run, { k: s.k, node: s.node, push: false });
  else if (s.run && s.k) { slider.set(s.k); setK(slider.k); commitK(slider.k); }
}

// ---------------------------------------------------------------- the run's view
function cfgFor(run, nTotal, edges) {
  const c = run.cfg ?? run.graph ?? null;
  if (c && c.n_layers) return c;
  const m = app.models.find((x) => modelName(x) === run.model);
  const L = m?.layers ?? m?.n_layers, H = m?.heads ?? m?.n_heads;
  if (L && H) {
    // attn_only is not in the model list: the edge count tells
    const attn_only = m.attn_only ?? (edgeCount({ n_layers: L, n_heads: H, attn_only: true }) === nTotal);
    return { n_layers: L, n_heads: H, attn_only, parallel_attn_mlp: !!m.parallel_attn_mlp };
  }
  // imported circuit of a model not served here: the names tell the shape (all edges are loaded when small)
  for (const attn_only of [false, true]) {
    const guess = { ...inferConfig(edges.map((e) => e.name)), attn_only };
    if (edgeCount(guess) === nTotal) return guess;
  }
  return inferConfig(edges.map((e) => e.name));
}

export async function openRun(id, { k = null, node = null, push = true } = {}) {
  let run;
  try {
    run = await api.getRun(id);
  } catch (e) {
    toast(e.status === 404 ? `Run ${id} no longer exists on this server` : `Could not open run ${id}: ${e.message}`, "error");
    return;
  }
  if (run.status === "queued" || run.status === "running") { follow(run.id ?? id); return; }
  if (run.status !== "done") {
    showRunError(run.status === "failed" ? `Run ${id} failed: ${run.error ?? ""}` : `Run ${id} was ${run.status}.`);
    return;
  }
  showRunError("");
  const curveP = api.curve(id).then(curvePoints, (e) => e);  // stored with the run: cheap
  let data;
  try {
    data = await api.edges(id, { top_k: MAX_SHOWN });
  } catch (e) {
    toast(`Could not load the edges of run ${id}: ${e.message}`, "error");
    return;
  }
  run.id = run.id ?? id;
  app.run = run;
  app.exact = new Map();
  app.loaded = sortByAbs(data.edges.map((e) => (e.src && e.dst ? e : { ...e, ...parseEdge(e.name) })));
  app.nTotal = data.n_edges_total ?? app.loaded.length;
  app.maxAbs = app.loaded.length ? Math.abs(app.loaded[0].score) : 0;
  app.cfg = cfgFor(run, app.nTotal, app.loaded);

  $("empty-state").hidden = true;
  $("legend").hidden = false;
  closeNode(false);
  view.setModel(app.cfg);
  const kMax = sliderMax(app.loaded.length);
  slider.setRange(kMax);
  if (k === null && run.method === "imported" && run.meta?.selection?.top_k) k = run.meta.selection.top_k;
  if (k === null) {
    const pts = await curveP;
    k = Array.isArray(pts) ? firstFaithful(pts, kMax) : null;
  }
  slider.set(k ?? defaultK(app.nTotal, kMax));
  $("export-json").disabled = $("export-png").disabled = kMax === 0;
  $("edge-total").textContent = `of ${formatInt(app.nTotal)}`;
  $("edge-total").title = app.nTotal > kMax ? `the slider reaches the top ${formatInt(kMax)} edges: more is unreadable (and slow) in one view` : "";
  renderTitle(run);
  app.k = -1;
  setK(slider.k);
  if (push) history.pushState(null, "", encodeState({ run: run.id, k: app.k }, window.location.search));
  else history.replaceState(null, "", encodeState({ run: run.id, k: app.k, node }, window.location.search));
  renderRuns(app.runs, run.id, (rid) => openRun(rid));
  if (node) openNode(node, false);
  loadCurve(run.id, curveP);
  commitK(app.k, false);
  window.__edgewise.ready = true;
}

/** First view of a run: the fewest edges whose circuit recovers 90% of the metric (from the curve). */
function firstFaithful(points, kMax) {
  const p = points.find((q) => q.y >= 0.9 && q.k <= kMax);
  return p ? p.k : null;
}

function renderTitle(run) {
  const imported = run.method === "imported";
  const parts = [["model", run.model ?? run.meta?.model], [imported ? "imported" : "method", imported ? run.meta?.method ?? "circuit" : run.method],
    ["metric", run.metric],
    ["pairs", run.n_pairs ?? run.dataset?.n_pairs ?? run.dataset?.count], ["run", `#${run.id}`]];
  $("run-title").replaceChildren(...parts.filter(([, v]) => v !== undefined && v !== null).map(([k, v]) => {
    const s = document.createElement("span");
    s.innerHTML = `<span class="muted">${k}</span> `;
    const b = document.createElement("strong");
    b.textContent = String(v);
    s.append(b);
    return s;
  }));
}

async function loadCurve(id, curveP) {
  $("chart-note").textContent = "loading…";
  try {
    const pts = await curveP;
    if (pts instanceof Error) throw pts;
    if (String(app.run?.id) !== String(id)) return;
    await chart.setCurve(pts, "no curve for this run");
    $("chart-note").textContent = pts.length ? `${pts.length} points · dotted line: the full model` : "";
    const ex = app.exact.get(app.k);
    if (ex) chart.setExact(app.k, ex.normalized);
    chart.mark(app.k);
  } catch (e) {
    if (String(app.run?.id) !== String(id)) return;
    await chart.setCurve([], `no curve: ${e.message}`);
    $("chart-note").textContent = "";
  }
}

/** Draw the top k edges (live, on every slider move). */
function setK(k) {
  if (k === app.k) return;
  app.k = k;
  app.shown = selectTop(app.loaded, k);
  view.setEdges(app.shown, app.maxAbs);
  $("edge-count").textContent = `${app.shown.length} edges shown`;
  const thr = thresholdFor(app.loaded, k);
  $("threshold-score").textContent = Number.isFinite(thr) ? `|score| ≥ ${formatScore(thr)}` : "";
  const ex = app.exact.get(k);
  const f = $("faithfulness");
  f.textContent = ex ? formatFaith(ex.normalized) : "…";
  f.classList.toggle("pending", !ex);
  chart.mark(k);
  if (app.node) openNode(app.node, false);
}

function formatFaith(x) { return Number.isFinite(x) ? x.toFixed(3) : "n/a"; }

/** Slider released: remember k in the URL and ask the server for the exact faithfulness of the shown circuit. */
async function commitK(k, updateUrl = true) {
  if (!app.run) return;
  if (updateUrl) history.replaceState(null, "", encodeState({ run: app.run.id, k, node: app.node }, window.location.search));
  const f = $("faithfulness");
  const cached = app.exact.get(k);
  if (cached) { chart.setExact(k, cached.normalized); return; }
  const seq = ++app.faithSeq;
  const runId = app.run.id;
  const names = app.shown.map((e) => e.name);
  f.textContent = "…";
  f.classList.add("pending");
  try {
    const res = await api.faithfulness(runId, { edges: names });
    app.exact.set(k, res);
    if (seq !== app.faithSeq || app.k !== k) return;
    f.textContent = formatFaith(res.normalized);
    f.title = `metric: clean ${formatScore(res.metric_clean)}, corrupted ${formatScore(res.metric_corrupted)}, circuit ${formatScore(res.metric_circuit)}`;
    f.classList.remove("pending");
    chart.setExact(k, res.normalized);
  } catch (e) {
    if (seq !== app.faithSeq) return;
    f.textContent = "n/a";
    f.title = e.message;
    f.classList.remove("pending");
  }
}

// ---------------------------------------------------------------- node panel
function openNode(name, updateUrl = true) {
  if (!view.cy.getElementById(name).length) return;
  app.node = name;
  view.focus(name);
  // the panel takes the stage's right side: fit the graph into what is left when it first opens
  if (showNodePanel(name, app.loaded, new Set(app.shown.map((e) => e.name)), app.nTotal, (peer) => openNode(peer))) view.fit();
  if (updateUrl && app.run) history.replaceState(null, "", encodeState({ run: app.run.id, k: app.k, node: name }, window.location.search));
}

function closeNode(updateUrl = true) {
  if (!app.node) return;
  app.node = null;
  view.focus(null);
  if (hideNodePanel()) view.fit();
  if (updateUrl && app.run) history.replaceState(null, "", encodeState({ run: app.run.id, k: app.k }, window.location.search));
}

// ---------------------------------------------------------------- export, import
function fileStem() {
  const r = app.run;
  return [r.model, r.method, `top${app.k}`].filter(Boolean).join("-").replace(/[^\w.-]+/g, "_");
}

async function exportJson() {
  if (!app.run) return;
  const names = app.shown.map((e) => e.name);
  const ex = app.exact.get(app.k);
  const extra = { selection: { top_k: names.length } };
  if (ex) extra.faithfulness = { metric_clean: ex.metric_clean, metric_corrupted: ex.metric_corrupted, metric_circuit: ex.metric_circuit, normalized: ex.normalized };
  let base;
  try {
    base = await api.circuit(app.run.id, { top_k: names.length });
    if (typeof base === "string") base = JSON.parse(base);
  } catch {
    // the server could not build it: write one from what the page holds (the loaded edges)
    base = { format: "edgewise.circuit/v1", cfg: { d_model: 0, parallel_attn_mlp: false, ...app.cfg },
      model: app.run.model, method: app.run.method, metric: app.run.metric, nodes: {},
      edges: Object.fromEntries(app.loaded.map((e) => [e.name, { score: e.score, in_graph: false }])) };
  }
  const out = circuitForView(base, names, extra);
  download(JSON.stringify(out, null, 1), `${fileStem()}.json`);
  toast(`Exported ${names.length} edges`);
}

async function exportPng() {
  if (!app.run) return;
  download(await view.png(), `${fileStem()}.png`, "image/png");
}

async function importFile(file) {
  let json;
  try {
    json = JSON.parse(await file.text());
  } catch (e) {
    toast(`${file.name} is not JSON: ${e.message}`, "error");
    return;
  }
  try {
    const res = await api.importCircuit(json);
    const id = res.id ?? res.run_id;
    toast(`Imported ${file.name}`);
    await refreshRuns();
    await openRun(id);
  } catch (e) {
    toast(`Import failed: ${e.message}`, "error");
  }
}

function wireExplorer() {
  $("export-json").addEventListener("click", exportJson);
  $("export-png").addEventListener("click", exportPng);
  $("import-circuit").addEventListener("change", () => {
    const file = $("import-circuit").files[0];
    $("import-circuit").value = "";
    if (file) importFile(file);
  });
  $("node-close").addEventListener("click", () => closeNode());
  $("fit").addEventListener("click", () => view.fit());
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") closeNode(); });
}
