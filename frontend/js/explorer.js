// The explorer: opening (and closing) a run, the selection rule and the slider, the faithfulness of
// the shown circuit and the node panel. The overlays (compare, known circuit) live in overlays.js,
// export/import in exporter.js, the keyboard and "Find node" in keys.js.
import * as api from "./api.js";
import { app } from "./app.js";
import { Chart, RocChart, curvePoints } from "./chart.js";
import { compareShown, compareStats } from "./compare.js";
import { edgesShown, formatFaith, formatInt, formatScore } from "./format.js";
import { finishCurve, initCurveView, liveEvent, showMib, startCurve } from "./curveview.js";
import { fillFromRun, follow, showRunError } from "./form.js";
import { GraphView } from "./graph.js";
import { parseEdge, runConfig } from "./layout.js";
import { edgeWeight } from "./look.js";
import { fillCompare, initOverlays, loadOverlay, renderInsights, setCompare, showCompareLegend, showTruth } from "./overlays.js";
import { clearPairs, refreshPairs } from "./pairview.js";
import { h, hideNodePanel, runSettings, showNodePanel, showRunWarnings, showTooltip, toast } from "./panels.js";
import { renderRuns } from "./runs.js";
import { MAX_SHOWN, defaultK, kScale, scoreScale, selectByScore, selectEdges, selectionKey, sliderMax, sortByAbs, thresholdFor } from "./select.js";
import { ThresholdSlider } from "./slider.js";
import { encodeState } from "./state.js";
import { ghostEdges } from "./truth.js";

const $ = (id) => document.getElementById(id);
const PANEL_SIDE_MIN = 900;  // stage width (px) from which the node panel sits beside the graph, not over it

let view, chart, rocChart, slider;
let openSeq = 0;      // a later openRun wins over an earlier one still loading
let chartDot = null;  // selection key of the exact-faithfulness dot on the chart

/** The graph view (for the test hook and keys.js); undefined until initExplorer. */
export function graphView() { return view; }

/** Build the graph, charts and slider with their libraries, and wire the toolbar. */
export function initExplorer(cytoscape, Plotly) {
  view = new GraphView(cytoscape, $("graph"), {
    onNodeClick: (name) => openNode(name),
    onBackgroundClick: () => closeNode(),
    onHover: showTooltip,
  });
  chart = new Chart(Plotly, $("chart"));
  rocChart = new RocChart(Plotly, $("roc"));
  slider = new ThresholdSlider($("threshold"), { onInput: onSlide, onCommit: () => commit() });
  initOverlays({ chart, rocChart }, { applyScale, refresh, commit, syncUrl });
  initCurveView(chart, (first) => {
    if (first) chartDot = null;
    showFaith();
    chart.mark(app.shown.length);
  });
  $("rule").addEventListener("change", onRuleChange);
  $("compare").addEventListener("change", () => setCompare($("compare").value || null));
  $("truth").addEventListener("change", () => {
    if (!app.truth) return;
    app.truth.on = $("truth").checked;
    showTruth();
    refresh();
  });
  $("node-close").addEventListener("click", () => closeNode());
  $("fit").addEventListener("click", () => view.fit());
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && app.node) closeNode(); });
}

/** Back/forward: reopen the view the URL names (no run: the empty page). */
export function onPopState(s) {
  if (!s.run) { closeRun(); return; }
  openRun(s.run, { state: s, push: false });
}

// ---------------------------------------------------------------- opening and closing a run
const withEnds = (e) => (e.src && e.dst ? e : { ...e, ...parseEdge(e.name) });

/** An imported circuit's own in_graph edges (GET /edges?own=true), ranked, or null if it marks none. */
async function ownEdges(id) {
  const own = (await api.edges(id, { own: true })).edges.map(withEnds);
  return own.length ? own : null;
}

let opening = null;  // the run openRun is loading
let drawnLive = null;  // the followed run, once opened at `scored` (its end then leaves the view alone)

/** The followed run is scored: draw it now (its curve and MIB scores fill in as they come). */
export function onScored(run) {
  drawnLive = run.id;
  if (String(app.run?.id) === String(run.id) || String(opening) === String(run.id)) return;
  openRun(run.id);
}

/** A followed run's `curve` point or `mib` scores. */
export function onEvent(id, kind, data) {
  liveEvent(id, kind, data);
}

/** A followed run ended: the open view takes its final state (or opens it, if `scored` was never seen). */
export function onEnd(run) {
  if (String(app.run?.id) !== String(run.id)) {
    if (run.status === "done" && String(drawnLive) !== String(run.id)) openRun(run.id);
    return;
  }
  app.run = { ...app.run, ...run };
  renderTitle(app.run);
  showRunWarnings(app.run.warnings ?? []);
  if (run.status === "failed") showRunError(`Run ${run.id} failed after its scores were stored: ${run.error ?? ""}`);
  finishCurve(app.run);
  renderRuns();
}

/** A run was deleted: leave it if open, drop it as the compared run. */
export function onDeleted(id) {
  if (String(app.cmp?.run.id) === String(id)) setCompare(null);
  if (String(app.run?.id) === String(id)) {
    closeRun();
    history.pushState(null, "", window.location.pathname + encodeState({}, window.location.search));
  }
}

/** Open run `id`; state: what the URL asks for ({k, rule, t, connected, cmp, node}). */
export async function openRun(id, { state = {}, push = true } = {}) {
  const seq = ++openSeq;
  opening = id;
  let run;
  try {
    run = await api.getRun(id);
  } catch (e) {
    if (seq === openSeq) opening = null;
    toast(e.status === 404 ? `Run ${id} no longer exists on this server` : `Could not open run ${id}: ${e.message}`, "error");
    return;
  }
  if (seq !== openSeq) return;
  const live = run.status === "queued" || run.status === "running";
  if (live && String(app.following) !== String(run.id ?? id)) follow(run.id ?? id);  // draws it at `scored`
  if (!run.scored) {
    opening = null;
    if (!live) showRunError(run.status === "failed" ? `Run ${id} failed: ${run.error ?? ""}` : `Run ${id} was ${run.status}.`);
    return;
  }
  // a run that failed after its scores were stored (e.g. during its curve) still shows its graph
  showRunError(run.status === "failed" ? `Run ${id} failed after its scores were stored: ${run.error ?? ""}` : "");
  const curveP = api.curve(id).then((c) => c.points ?? [], (e) => e);  // stored with the run: cheap; raw points
  let data, own;
  try {
    [data, own] = await Promise.all([api.edges(id, { top_k: MAX_SHOWN }), run.method === "imported" ? ownEdges(id) : null]);
  } catch (e) {
    if (seq === openSeq) opening = null;
    toast(`Could not load the edges of run ${id}: ${e.message}`, "error");
    return;
  }
  if (seq !== openSeq) return;
  opening = null;
  run.id = run.id ?? id;
  Object.assign(app, { run, exact: new Map(), own, all: null, allScores: new Map(), cmp: null, truth: null,
    firstDraw: { run: run.id, status: run.status } });
  app.loaded = sortByAbs(data.edges.map(withEnds));
  app.nTotal = data.n_edges_total ?? app.loaded.length;
  app.maxAbs = Math.max(app.loaded.length ? Math.abs(app.loaded[0].score) : 0, ...(own ?? []).map((e) => Math.abs(e.score)));
  app.cfg = runConfig(run, app.nTotal, app.loaded.map((e) => e.name), app.models);
  chartDot = null;

  $("empty-state").hidden = true;
  $("legend").hidden = false;
  closeNode(false);
  view.setModel(app.cfg);
  $("node-names").replaceChildren(...view.cy.nodes().map((n) => new Option(n.id(), n.id())));  // "Find node" suggestions
  app.cursor = null;
  fillFromRun(run);
  $("rule").querySelector("option[value=own]").hidden = $("rule").querySelector("option[value=own]").disabled = !own;
  for (const id2 of ["rule", "find"]) $(id2).disabled = false;

  const kMax = sliderMax(app.loaded.length);
  let rule = state.rule ?? (own ? "own" : "top_k");
  if (rule === "own" && !own) rule = "top_k";
  app.sel = { rule, connected: rule !== "own" && !!state.connected, k: 0, t: 0 };
  if (rule === "abs") app.sel.t = state.t ?? thresholdFor(app.loaded, defaultK(app.nTotal, kMax));
  else if (rule === "top_k") {
    let k = state.k;
    if (k == null) {
      const pts = await curveP;
      if (seq !== openSeq) return;
      k = Array.isArray(pts) ? firstFaithful(curvePoints(pts), kMax) : null;
    }
    app.sel.k = k ?? defaultK(app.nTotal, kMax);
  }
  applyScale();
  $("export-json").disabled = $("export-png").disabled = $("export-svg").disabled = kMax === 0 && !own;
  renderTitle(run);
  showRunWarnings(run.warnings ?? []);
  showCompareLegend();
  showTruth();
  refresh();
  syncUrl(push);
  renderRuns();
  if (state.node) openNode(state.node, false);
  startCurve(run, curveP);
  fillCompare();
  if (state.cmp) setCompare(state.cmp, false);
  loadOverlay(run);
  commit(false);
  window.__edgewise.ready = true;
}

/** No run (the URL lost it: back to "/"): the empty page. */
export function closeRun() {
  openSeq++;
  Object.assign(app, { run: null, loaded: [], shown: [], own: null, all: null, cmp: null, truth: null, nTotal: 0, node: null, curve: null });
  hideNodePanel();
  view.clear();
  $("empty-state").hidden = false;
  $("legend").hidden = true;
  slider.setScale(null);
  $("edge-count").textContent = edgesShown(0);
  for (const id of ["edge-total", "threshold-score", "run-title", "chart-note"]) $(id).textContent = "";
  $("faithfulness").textContent = "—";
  for (const id of ["export-json", "export-svg", "export-png", "rule", "compare", "find"]) $(id).disabled = true;
  showRunWarnings([]);
  $("truth-line").hidden = $("roc-wrap").hidden = true;
  renderInsights(null, null);
  chart.setCompare(null);
  chart.setCurve([], "Run attribution to see faithfulness");
  showMib(null);
  clearPairs();
  renderRuns();
  window.__edgewise.ready = true;
}

/** First view of a run: the fewest edges whose circuit recovers 90% of the metric (from the curve). */
function firstFaithful(points, kMax) {
  const p = points.find((q) => q.y >= 0.9 && q.k <= kMax);
  return p ? p.k : null;
}

function renderTitle(run) {
  const imported = run.method === "imported";
  const st = runSettings(run, app.datasets);
  const parts = [["", run.name], ["model", run.model ?? run.meta?.model], [imported ? "imported" : "method", imported ? run.meta?.method ?? "circuit" : run.method],
    ["metric", run.metric], ["ablation", st.ablation], ["IG", st.steps], ["dtype", imported ? null : run.dtype ?? "float32"],
    ["dataset", st.dataset], ["run", `#${run.id}`]];
  $("run-title").replaceChildren(...parts.filter(([, v]) => v !== undefined && v !== null).map(([k, v]) =>
    h("span", {}, h("span", { class: "muted" }, `${k} `), h("strong", {}, String(v)))));
}

// ---------------------------------------------------------------- selection: rule, slider, faithfulness
const ruleValue = (sel) => (sel.rule === "own" ? "own" : sel.rule + (sel.connected ? "+connected" : ""));

/** Edges the rule keeps before the connected prune (what compare matches and a rule change keeps). */
function preCount(sel) {
  if (sel.rule === "own") return app.own?.length ?? 0;
  return sel.rule === "abs" ? selectByScore(app.loaded, sel.t).length : sel.k;
}

/** The slider's scale for the rule (k, or |score|), positioned at the selection. */
function applyScale() {
  const kMax = sliderMax(app.loaded.length, app.cmp ? MAX_SHOWN / 2 : MAX_SHOWN);  // compare draws two circuits
  const abs = app.sel.rule === "abs";
  const scale = abs ? scoreScale(app.loaded, kMax) : kScale(kMax);
  slider.setScale(scale);
  if (abs) app.sel.t = scale.clamp(app.sel.t);
  else if (app.sel.rule === "top_k") app.sel.k = scale.clamp(app.sel.k);
  slider.set(abs ? app.sel.t : app.sel.rule === "own" ? app.own.length : app.sel.k);
  $("rule").value = ruleValue(app.sel);
  $("edge-total").textContent = `of ${formatInt(app.nTotal)}`;
  $("edge-total").title = app.nTotal > kMax ? `the slider reaches the top ${formatInt(kMax)} edges: more is unreadable (and slow) in one view` : "";
}

function onSlide(v) {
  if (app.sel.rule === "own") app.sel.rule = "top_k";  // moving the slider leaves the file's own selection
  if (app.sel.rule === "abs") app.sel.t = v; else app.sel.k = v;
  $("rule").value = ruleValue(app.sel);
  refresh();
}

function onRuleChange() {
  const [rule, c] = $("rule").value.split("+");
  const n = Math.max(1, preCount(app.sel));  // keep about as many edges as before
  app.sel = { ...app.sel, rule, connected: c === "connected" };
  if (rule === "abs") app.sel.t = thresholdFor(app.loaded, n);
  else if (rule === "top_k") app.sel.k = n;
  applyScale();
  refresh();
  commit();
}

function thresholdText() {
  const sel = app.sel;
  const pre = preCount(sel);
  const pruned = sel.connected ? ` · connected: ${app.shown.length} of ${pre}` : "";
  if (sel.rule === "own") return "as imported";
  const t = sel.rule === "abs" ? sel.t : thresholdFor(app.loaded, sel.k);
  return (Number.isFinite(t) ? `|score| ≥ ${formatScore(t)}` : "") + pruned;
}

/** Draw the selection (live, on every slider move): A's circuit, B's in compare, the known circuit. */
export function refresh() {
  if (!app.run) return;
  app.shown = selectEdges(app.loaded, app.sel, app.own);
  const truth = app.truth?.on ? app.truth.names : null;
  const look = (e, maxAbs, cls) => ({ ...e, w: edgeWeight(e.score, maxAbs), cls, truth: !!truth?.has(e.name) });
  let draw, cmpStats = null;
  if (app.cmp) {
    app.cmp.shown = compareShown(app.cmp.loaded, app.loaded, app.sel, app.own?.length ?? 0);
    cmpStats = compareStats(app.shown, app.cmp.shown, app.cmp, app.all);
    const inB = new Set(app.cmp.shown.map((e) => e.name)), bOnly = new Set(cmpStats.classes.b);
    draw = app.shown.map((e) => look(e, app.maxAbs, inB.has(e.name) ? "both" : "a"))
      .concat(app.cmp.shown.filter((e) => bOnly.has(e.name)).map((e) => look(e, app.cmp.maxAbs, "b")));
  } else draw = app.shown.map((e) => look(e, app.maxAbs, null));
  view.setEdges(draw);
  view.setGhosts(truth ? ghostEdges(truth, new Set(draw.map((e) => e.name)), app.allScores) : []);
  $("edge-count").textContent = edgesShown(app.shown.length);
  $("threshold-score").textContent = thresholdText();
  showFaith();
  chart.mark(app.shown.length);
  renderInsights(cmpStats, truth);
  if (app.node) openNode(app.node, false);
}

/** The faithfulness of the shown circuit when known (else "…"), in the toolbar and on the chart. */
function showFaith() {
  const key = selectionKey(app.sel);
  const ex = app.exact.get(key);
  const f = $("faithfulness");
  f.textContent = ex ? formatFaith(ex.normalized) : "…";
  f.classList.toggle("pending", !ex);
  if (ex) f.title = `metric: clean ${formatScore(ex.metric_clean)}, corrupted ${formatScore(ex.metric_corrupted)}, circuit ${formatScore(ex.metric_circuit)}`;
  const dot = ex && Number.isFinite(ex.normalized) ? key : null;
  if (dot !== chartDot) {  // never leave the last dot where the slider no longer is
    chartDot = dot;
    chart.setExact(app.shown.length, dot ? ex.normalized : null);
  }
}

/** Slider released (or a rule chosen): the URL, and the exact faithfulness of the shown circuit. */
async function commit(updateUrl = true) {
  if (!app.run) return;
  if (updateUrl) syncUrl();
  refreshPairs();
  const key = selectionKey(app.sel);
  if (app.exact.has(key)) { showFaith(); return; }
  const seq = ++app.faithSeq;
  const runId = app.run.id;
  const names = app.shown.map((e) => e.name);
  const f = $("faithfulness");
  try {
    const res = await api.faithfulness(runId, { edges: names });
    if (String(app.run?.id) !== String(runId)) return;
    app.exact.set(key, res);
    showFaith();
  } catch (e) {
    if (seq !== app.faithSeq || String(app.run?.id) !== String(runId)) return;
    f.textContent = "n/a";
    f.title = e.message;
    f.classList.remove("pending");
  }
}

/** The view in the URL (replace; push when a run is opened). */
export function syncUrl(push = false) {
  if (!app.run) return;
  const sel = app.sel;
  const dflt = app.own ? "own" : "top_k";
  const state = { run: app.run.id, rule: sel.rule === dflt ? null : sel.rule, k: sel.rule === "own" ? null : sel.k, t: sel.t,
    connected: sel.connected, cmp: app.cmp?.run.id ?? null, node: app.node };
  if (state.rule === null && dflt === "own") state.k = null;
  const url = encodeState(state, window.location.search);
  if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
}

// ---------------------------------------------------------------- node panel
export function openNode(name, updateUrl = true) {
  if (!view.cy.getElementById(name).length) return;
  app.node = name;
  view.focus(name);
  const opened = showNodePanel(name, app.loaded, new Set(app.shown.map((e) => e.name)), app.nTotal,
    (peer) => openNode(peer), (edge) => view.highlightEdge(edge));
  if (opened) placePanel(name);
  if (updateUrl) syncUrl();
}

/** Beside the graph when the stage is wide (refit into what is left); over it when narrow (pan the node clear). */
function placePanel(name) {
  const stage = $("graph").parentElement;
  if (stage.clientWidth >= PANEL_SIDE_MIN) {
    stage.classList.add("with-panel");
    view.fit();
    return;
  }
  const free = stage.clientWidth - $("node-panel").offsetWidth - 20;
  const p = view.cy.getElementById(name).renderedPosition();
  if (p.x > free - 30) view.cy.panBy({ x: free / 2 - p.x, y: 0 });
}

export function closeNode(updateUrl = true) {
  if (!app.node) return;
  app.node = null;
  view.focus(null);
  view.highlightEdge(null);
  const beside = $("graph").parentElement.classList.contains("with-panel");
  if (hideNodePanel() && beside) view.fit();
  if (updateUrl) syncUrl();
}
