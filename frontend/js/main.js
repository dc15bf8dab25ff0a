// The page: wires the form (data → run), the run's view (graph, slider, chart) and the URL.
// Test hook: window.__edgewise exposes the cytoscape instance and the view state (tests, bench).
import * as api from "./api.js";
import { Chart, curvePoints } from "./chart.js";
import { formatInt, formatScore } from "./format.js";
import { GraphView } from "./graph.js";
import { edgeCount, inferConfig, parseEdge } from "./layout.js";
import {
  download, hideNodePanel, renderRuns, showDataset, showErrors, showNodePanel, showTooltip, toast,
} from "./panels.js";
import { MAX_SHOWN, circuitForView, defaultK, selectTop, sliderMax, sortByAbs, thresholdFor } from "./select.js";
import { ThresholdSlider } from "./slider.js";
import { decodeState, encodeState } from "./state.js";
import { load } from "./vendor.js";

const $ = (id) => document.getElementById(id);

const METHOD_INFO = {
  eap: "EAP: one gradient at the clean run — every edge scored in two forward and one backward pass.",
  "eap-ig-inputs": "EAP-IG: gradients averaged along the path corrupted → clean at each node's input; more faithful, a few times slower.",
  "eap-ig-activations": "EAP-IG on activations: integrated gradients on each source's output.",
  "clean-corrupted": "Gradients at the clean and the corrupted run, averaged (two ends of the path).",
  exact: "Patch every edge on its own and measure the metric: the ground truth, one forward pass per edge (small models only).",
};
const BASE_METRICS = ["logit_diff", "prob_diff", "kl"];

const app = {
  models: [],
  tasks: [],
  runs: [],
  source: null,        // {file} or {text, name}: what the next dataset upload sends
  dataset: null,       // the API's answer for `source`, with .model
  run: null,           // GET /api/runs/{id}
  loaded: [],          // edges of the run, sorted by |score|, at most MAX_SHOWN
  nTotal: 0,
  maxAbs: 0,
  k: 0,
  shown: [],
  node: null,
  exact: new Map(),    // k → faithfulness answer, for the open run
  stopFollow: null,
  faithSeq: 0,
};

let view, chart, slider;

// ---------------------------------------------------------------- test hook
window.__edgewise = {
  ready: false,
  get cy() { return view?.cy; },
  get runId() { return app.run?.id ?? null; },
  get k() { return app.k; },
  get nTotal() { return app.nTotal; },
  /** |score| an edge must reach to be drawn at the current threshold */
  get threshold() { return thresholdFor(app.loaded, app.k); },
  get node() { return app.node; },
  shown: () => app.shown.map((e) => e.name),
  drawn: () => view?.drawn() ?? [],
};

// ---------------------------------------------------------------- start
async function start() {
  const [cytoscape, Plotly] = await Promise.all([load("cytoscape"), load("Plotly")]);
  view = new GraphView(cytoscape, $("graph"), {
    onNodeClick: (name) => openNode(name),
    onBackgroundClick: () => closeNode(),
    onHover: showTooltip,
  });
  chart = new Chart(Plotly, $("chart"));
  slider = new ThresholdSlider($("threshold"), { onInput: (k) => setK(k), onCommit: (k) => commitK(k) });
  wireForm();
  wireExplorer();

  api.health().then((h) => {
    $("server-info").textContent = [h.version && `v${h.version}`, h.device && `device: ${h.device}`].filter(Boolean).join(" · ");
  }).catch(() => { $("server-info").textContent = "server unreachable"; });

  const [models, tasks] = await Promise.all([
    api.models().catch((e) => {
      toast(e.status === 401 ? "This server needs a token: open the page as /?token=<EDGEWISE_TOKEN>"
        : `Could not list models: ${e.message}`, "error");
      return [];
    }),
    api.tasks().catch(() => []),
  ]);
  app.models = Array.isArray(models) ? models : (models.models ?? []);
  app.tasks = Array.isArray(tasks) ? tasks : (tasks.tasks ?? []);
  fillTasks();
  fillModels();
  refreshRuns();

  const st = decodeState(window.location.search);
  if (st.run) await openRun(st.run, { k: st.k, node: st.node, push: false });
  window.addEventListener("popstate", () => {
    const s = decodeState(window.location.search);
    if (s.run && s.run !== String(app.run?.id)) openRun(s.run, { k: s.k, node: s.node, push: false });
    else if (s.run && s.k) { slider.set(s.k); setK(slider.k); commitK(slider.k); }
  });
}

// ---------------------------------------------------------------- form: data, model, run
function modelName(m) { return m.name ?? m.id; }

function fillModels() {
  const sel = $("model");
  sel.replaceChildren(...app.models.map((m) => new Option(modelName(m), modelName(m))));
  // the example task's model first: it works offline and has pairs to load
  const first = preferredTask();
  if (first && app.models.some((m) => modelName(m) === first.model)) sel.value = first.model;
  onModelChange();
}

/** The example offered first: toy-ioi (text prompts, a known circuit family), else the first task. */
function preferredTask() {
  return app.tasks.find((t) => t.name === "toy-ioi") ?? app.tasks[0];
}

function fillTasks() {
  const sel = $("example-task");
  sel.replaceChildren(...app.tasks.map((t) => {
    const o = new Option(t.name, t.name);
    o.title = `${t.n_pairs ?? "?"} pairs · model ${t.model} · metric ${t.metric}${t.description ? ` — ${t.description}` : ""}`;
    return o;
  }));
  const preferred = preferredTask();
  if (preferred) sel.value = preferred.name;
  $("load-example").disabled = app.tasks.length === 0;
  if (!app.tasks.length) $("example-hint").textContent = "No bundled tasks on this server.";
}

function currentModel() { return app.models.find((m) => modelName(m) === $("model").value); }

function onModelChange() {
  const m = currentModel();
  const info = $("model-info");
  if (m) {
    const L = m.layers ?? m.n_layers, H = m.heads ?? m.n_heads, E = m.edges ?? m.n_edges ?? m.edge_count;
    info.textContent = [m.description, [L != null && `${L} layers`, H != null && `${H} heads`, E != null && `${formatInt(E)} edges`].filter(Boolean).join(", ")]
      .filter(Boolean).join(" — ");
  } else info.textContent = "";
  const taskMetrics = app.tasks.filter((t) => t.model === $("model").value).map((t) => t.metric);
  const metrics = [...new Set([...(m?.metrics ?? BASE_METRICS), ...taskMetrics])];
  const sel = $("metric");
  const prev = sel.value;
  sel.replaceChildren(...metrics.map((x) => new Option(x, x)));
  sel.value = metrics.includes(prev) && !taskMetrics.length ? prev : (taskMetrics[0] ?? metrics[0]);
  // the dataset was checked against another model: check it again
  if (app.source && (!app.dataset || app.dataset.model !== $("model").value)) validate();
}

function sourceLabel(src) { return src?.file ? src.file.name : src?.name ?? "pasted pairs"; }

/** Upload app.source for the chosen model; returns the dataset or null (errors shown). */
async function validate() {
  const src = app.source;
  if (!src) return null;
  const model = $("model").value;
  showErrors([]);
  $("dataset-status").textContent = "Checking pairs…";
  try {
    const ds = await api.uploadDataset({ file: src.file, text: src.text, model });
    if (app.source !== src) return null;  // replaced meanwhile
    app.dataset = { ...ds, model };
    showDataset(ds, `${sourceLabel(src)} · ${model}`);
    return app.dataset;
  } catch (e) {
    if (app.source !== src) return null;
    app.dataset = null;
    $("dataset-status").textContent = "";
    showErrors(e.status === 422 || e.status === 400 || e.status === 413 ? e.lines : [e.message]);
    return null;
  }
}

function setSource(src) {
  app.source = src;
  app.dataset = null;
  return validate();
}

async function loadExample() {
  const task = app.tasks.find((t) => t.name === $("example-task").value);
  if (!task) return;
  const btn = $("load-example");
  btn.disabled = true;
  app.source = null;
  try {
    const text = await api.taskPairs(task.name, "csv");
    if (app.models.some((m) => modelName(m) === task.model)) $("model").value = task.model;
    onModelChange();
    if ([...$("metric").options].some((o) => o.value === task.metric)) $("metric").value = task.metric;
    $("pairs-text").value = text;
    $("pairs-file").value = "";
    await setSource({ text, name: `${task.name}.csv (example)` });
  } catch (e) {
    showErrors([`Could not load the example: ${e.message}`]);
  } finally {
    btn.disabled = false;
  }
}

function wireForm() {
  $("model").addEventListener("change", onModelChange);
  $("method").addEventListener("change", () => { $("method-info").textContent = METHOD_INFO[$("method").value] ?? ""; });
  $("method-info").textContent = METHOD_INFO[$("method").value];
  $("load-example").addEventListener("click", loadExample);
  $("pairs-file").addEventListener("change", () => {
    const file = $("pairs-file").files[0];
    if (file) setSource({ file });
  });
  $("use-pasted").addEventListener("click", () => {
    const text = $("pairs-text").value;
    if (!text.trim()) { showErrors(["Paste some pairs first (CSV with a header row, JSONL or JSON)."]); return; }
    setSource({ text, name: "pasted pairs" });
  });
  const zone = $("dropzone");
  zone.addEventListener("dragover", (ev) => { ev.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    zone.classList.remove("over");
    const file = ev.dataTransfer.files[0];
    if (file) setSource({ file });
  });
  $("run").addEventListener("click", startRun);
  $("cancel").addEventListener("click", async () => {
    if (!app.following) return;
    try { await api.cancelRun(app.following); } catch (e) { toast(`Cancel failed: ${e.message}`, "error"); }
  });
}

async function startRun() {
  $("run-error").hidden = true;
  // nothing chosen yet: the example of the chosen model, if there is one (a first visit needs no file)
  const example = app.tasks.find((t) => t.name === $("example-task").value);
  if (!app.source && example?.model === $("model").value) await loadExample();
  if (!app.source) {
    showErrors(["Choose a prompt pairs file, paste pairs, or click “Load example” first."]);
    return;
  }
  const btn = $("run");
  btn.disabled = true;
  try {
    const model = $("model").value;
    const ds = app.dataset && app.dataset.model === model ? app.dataset : await validate();
    if (!ds) return;
    const body = { model, dataset_id: ds.id, method: $("method").value, metric: $("metric").value };
    const run = await api.createRun(body);
    const id = run.id ?? run.run_id;
    app.runs = [{ ...body, ...run, id, status: run.status ?? "queued" }, ...app.runs];
    renderRuns(app.runs, app.run?.id, (rid) => openRun(rid));
    follow(id);
  } catch (e) {
    showRunError(e.message);
  } finally {
    btn.disabled = !!app.following;
  }
}

function showRunError(msg) {
  $("run-error").textContent = msg;
  $("run-error").hidden = !msg;
}

function setProgress(info) {
  const bar = $("progressbar");
  const p = Math.max(0, Math.min(1, Number(info.progress) || 0));
  bar.setAttribute("aria-valuenow", String(Math.round(p * 100)));
  bar.classList.toggle("indeterminate", info.status === "queued");
  bar.querySelector(".progress-fill").style.width = `${p * 100}%`;
  $("progress-text").textContent = info.status === "queued" ? "queued…"
    : `${info.stage ?? "running"} · ${Math.round(p * 100)}%`;
  // the main area says so too, where the eye is
  $("run-status").textContent = info.status === "queued" ? "Attribution queued…"
    : `Attribution running: ${info.stage ?? "working"} · ${Math.round(p * 100)}%`;
  $("run-status").hidden = false;
}

/** Follow run `id` with the progress bar; open it when done. */
function follow(id) {
  app.stopFollow?.();
  app.following = id;
  $("run-progress").hidden = false;
  $("run").disabled = true;
  setProgress({ status: "queued", progress: 0 });
  app.stopFollow = api.followRun(id, (info) => {
    if (info.status === "queued" || info.status === "running") { setProgress(info); return; }
    app.following = null;
    app.stopFollow = null;
    $("run-progress").hidden = true;
    $("run-status").hidden = true;
    $("run").disabled = false;
    refreshRuns();
    if (info.status === "done") openRun(id);
    else if (info.status === "failed") showRunError(`Run failed: ${info.error ?? "see the server log"}`);
    else if (info.status === "cancelled") toast("Run cancelled");
  });
}

async function refreshRuns() {
  try {
    const runs = await api.listRuns();
    app.runs = Array.isArray(runs) ? runs : (runs.runs ?? []);
  } catch { /* keep the list we have */ }
  renderRuns(app.runs, app.run?.id, (id) => openRun(id));
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

async function openRun(id, { k = null, node = null, push = true } = {}) {
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

start().catch((e) => {
  console.error(e);
  toast(`The page failed to start: ${e.message}`, "error");
});
