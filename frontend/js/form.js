// The form: prompt pairs (example, file, paste, drop), model (grouped by source), method, metric and
// the run settings (dtype among them), validation, starting a run and following it with the progress
// bar. Opening a run and drawing a live one are the explorer's: wireForm(hooks) hands them in.
import * as api from "./api.js";
import { app } from "./app.js";
import { formatInt } from "./format.js";
import { dtypeOptions, modelGroups, modelLabel } from "./models.js";
import { checkPairs, formatIssue, parseRecords, runBlocker } from "./pairs.js";
import { showDataset, showErrors, toast } from "./panels.js";
import { addRun, refreshRuns } from "./runs.js";

const $ = (id) => document.getElementById(id);

const METHOD_INFO = {
  eap: "EAP: one gradient at the clean run — every edge scored in two forward and one backward pass.",
  "eap-ig-inputs": "EAP-IG: gradients averaged along the path corrupted → clean at each node's input; more faithful, a few times slower.",
  "eap-ig-activations": "EAP-IG on activations: integrated gradients on each source's output.",
  "clean-corrupted": "Gradients at the clean and the corrupted run, averaged (two ends of the path).",
  relp: "RelP: EAP's cost, with LRP's rules in the backward pass (norm scales, attention patterns and MLP ratios held at the clean run); follows exact patching through MLPs far better. Query and key edges score 0 (patterns held constant).",
  exact: "Patch every edge on its own and measure the metric: the ground truth, one forward pass per edge (small models only).",
};
const ABLATION_INFO = {
  resample: "a patched edge carries its activation on the corrupted prompt",
  zero: "a patched edge carries zero",
  mean: "a patched edge carries its mean activation over the corrupted prompts",
};
const BASE_METRICS = ["logit_diff", "prob_diff", "kl"];
const STAGES = { "loading model": "loading the model", "faithfulness curve": "computing the faithfulness curve",
  mib: "computing MIB's CPR and CMD", saving: "saving the scores" };

// the explorer's, handed in by wireForm: draw a live run at `scored`; its curve points and MIB; its end
let hooks = { onScored: () => {}, onEvent: () => {}, onEnd: () => {} };

/** Fetch the models and bundled tasks, fill the selects, list the past runs. */
export async function fillForm() {
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
  await refreshRuns();
}

export function modelName(m) { return m.name ?? m.id; }

/** The Model select, grouped by where each model comes from (bundled, local, cache, hub). */
function fillModels() {
  const sel = $("model");
  sel.replaceChildren(...modelGroups(app.models).map((g) => {
    const group = document.createElement("optgroup");
    group.label = g.label;
    group.append(...g.models.map((m) => {
      const o = new Option(modelLabel(m), modelName(m));
      o.title = [m.description, m.download_needed ? "not on this machine: the first run downloads it" : ""].filter(Boolean).join(" — ");
      return o;
    }));
    return group;
  }));
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
    info.textContent = [m.description, [L != null && `${L} layers`, H != null && `${H} heads`, E != null && `${formatInt(E)} edges`].filter(Boolean).join(", "),
      m.download_needed ? "downloaded on its first run" : ""].filter(Boolean).join(" — ");
  } else info.textContent = "";
  fillDtypes(m);
  const taskMetrics = app.tasks.filter((t) => t.model === $("model").value).map((t) => t.metric);
  const metrics = [...new Set([...(m?.metrics ?? BASE_METRICS), ...taskMetrics])];
  const sel = $("metric");
  const prev = sel.value;
  sel.replaceChildren(...metrics.map((x) => new Option(x, x)));
  sel.value = metrics.includes(prev) && !taskMetrics.length ? prev : (taskMetrics[0] ?? metrics[0]);
  // the dataset was checked against another model: check it again
  if (app.source && (!app.dataset || app.dataset.model !== $("model").value)) validate();
  updateRunButton();
}

/** The Dtype select: what the server offers for this model (float32 only on a CPU). */
function fillDtypes(m) {
  const sel = $("dtype");
  const prev = sel.value;
  const opts = dtypeOptions(m);
  sel.replaceChildren(...opts.map((d) => new Option(d, d)));
  sel.value = opts.includes(prev) ? prev : opts[0];
  sel.title = opts.length > 1 ? "Weight dtype: half precisions halve the memory; scores accumulate in float32"
    : "float32: half precisions are offered where the server computes on a GPU";
}

/** "Run attribution" enabled only when it can start; the hint below it says why not. */
export function updateRunButton() {
  const why = runBlocker({ running: !!app.following, source: app.source, checking: app.checking,
    dataset: app.dataset, model: $("model").value });
  $("run").disabled = !!why;
  $("run-hint").textContent = why ?? "";
}

/** IG steps only mean something for the eap-ig methods; the hints say what the choices do. */
function onSettingsChange() {
  const m = $("method").value;
  $("method-info").textContent = METHOD_INFO[m] ?? "";
  $("ig-steps").disabled = !m.startsWith("eap-ig");
  $("settings-info").textContent = `Ablation ${$("ablation").value}: ${ABLATION_INFO[$("ablation").value] ?? ""}.`
    + (m.startsWith("eap-ig") ? ` ${$("ig-steps").value} IG steps: gradients at that many points between corrupted and clean.` : "");
}

/** An integer input's value within its min/max, or null with the field marked invalid. */
function intField(id) {
  const el = $(id);
  const v = Number(el.value);
  const ok = Number.isInteger(v) && v >= Number(el.min) && v <= Number(el.max);
  el.setAttribute("aria-invalid", ok ? "false" : "true");
  return ok ? v : null;
}

/** The form set to what a run used (a permalink shows its method, not the form's last choice). */
export function fillFromRun(run) {
  if (run.method === "imported") return;
  if (run.model && run.model !== $("model").value && [...$("model").options].some((o) => o.value === run.model)) {
    $("model").value = run.model;
    onModelChange();
  }
  const set = (id, v) => { if (v !== null && v !== undefined && [...($(id).options ?? [{ value: String(v) }])].some((o) => o.value === String(v))) $(id).value = String(v); };
  set("method", run.method);
  set("metric", run.metric);
  set("ablation", run.ablation);
  set("dtype", run.dtype);
  if (run.ig_steps) $("ig-steps").value = String(run.ig_steps);
  if (run.batch_size) $("batch-size").value = String(run.batch_size);
  onSettingsChange();
}

function sourceLabel(src) { return src?.file ? src.file.name : src?.name ?? "pasted pairs"; }

/** The page's own flags on the pairs (answer == wrong_answer), read from the text; [] when unreadable. */
async function pairFlags(src) {
  try {
    const text = src.text ?? await src.file.text();
    return checkPairs(parseRecords(text, src.file?.name ?? src.name ?? "")).map(formatIssue);
  } catch {
    return [];  // malformed: the server says what and where
  }
}

/** Upload app.source for the chosen model; returns the dataset or null (errors shown). */
async function validate() {
  const src = app.source;
  if (!src) return null;
  const model = $("model").value;
  showErrors([]);
  $("dataset-status").textContent = "Checking pairs…";
  app.checking = true;
  updateRunButton();
  try {
    const [ds, flags] = await Promise.all([api.uploadDataset({ file: src.file, text: src.text, name: src.upload, model }), pairFlags(src)]);
    if (app.source !== src) return null;  // replaced meanwhile
    app.dataset = { ...ds, model };
    showDataset(ds, `${sourceLabel(src)} · ${model}`, flags);
    return app.dataset;
  } catch (e) {
    if (app.source !== src) return null;
    app.dataset = null;
    $("dataset-status").textContent = "";
    const listed = Array.isArray(e.detail) || Array.isArray(e.detail?.errors);
    const bad = e.status === 422 || e.status === 400 || e.status === 413;
    // the server stops at the first bad row: say so, more may follow once it is fixed
    showErrors(bad ? e.lines : [e.message], { partial: bad && !listed && e.detail?.row != null });
    return null;
  } finally {
    if (app.source === src) app.checking = false;
    updateRunButton();
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
    await setSource({ text, name: `${task.name}.csv (example)`, upload: `${task.name}.csv` });
  } catch (e) {
    showErrors([`Could not load the example: ${e.message}`]);
  } finally {
    btn.disabled = false;
  }
}

/** Listen to the form's controls. h: {onScored(run), onEvent(id, kind, data), onEnd(run)}. */
export function wireForm(h) {
  hooks = { ...hooks, ...h };
  $("model").addEventListener("change", onModelChange);
  for (const id of ["method", "ablation", "ig-steps"]) $(id).addEventListener("change", onSettingsChange);
  for (const id of ["ig-steps", "batch-size"]) $(id).addEventListener("input", () => intField(id));
  onSettingsChange();
  updateRunButton();
  $("load-example").addEventListener("click", loadExample);
  $("pairs-file").addEventListener("change", () => {
    const file = $("pairs-file").files[0];
    if (file) setSource({ file });
  });
  $("use-pasted").addEventListener("click", () => {
    const text = $("pairs-text").value;
    if (!text.trim()) { showErrors(["Paste some pairs first (CSV with a header row, JSONL or JSON)."]); return; }
    setSource({ text, name: "pasted pairs", upload: null });
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
  if (runBlocker({ running: !!app.following, source: app.source, checking: app.checking, dataset: app.dataset, model: $("model").value })) {
    updateRunButton();
    return;
  }
  const batch = intField("batch-size"), steps = intField("ig-steps");
  if (batch === null || steps === null) {
    showRunError(`${batch === null ? "Batch size" : "IG steps"} must be a whole number between ${$(batch === null ? "batch-size" : "ig-steps").min} and ${$(batch === null ? "batch-size" : "ig-steps").max}.`);
    return;
  }
  const btn = $("run");
  btn.disabled = true;
  try {
    const model = $("model").value;
    const ds = app.dataset;
    const body = { model, dataset_id: ds.id, method: $("method").value, metric: $("metric").value,
      ablation: $("ablation").value, batch_size: batch, ig_steps: steps, dtype: $("dtype").value };
    const run = await api.createRun(body);
    const id = run.id ?? run.run_id;
    addRun({ ...body, ...run, id, status: run.status ?? "queued" });
    follow(id);
  } catch (e) {
    showRunError(e.message);
  } finally {
    updateRunButton();
  }
}

export function showRunError(msg) {
  $("run-error").textContent = msg;
  $("run-error").hidden = !msg;
}

function setProgress(info) {
  const bar = $("progressbar");
  const p = Math.max(0, Math.min(1, Number(info.progress) || 0));
  bar.setAttribute("aria-valuenow", String(Math.round(p * 100)));
  bar.classList.toggle("indeterminate", info.status === "queued");
  bar.querySelector(".progress-fill").style.width = `${p * 100}%`;
  const stage = STAGES[info.stage] ?? info.stage ?? "running";
  const pct = `${Math.round(p * 100)}%`;
  $("progress-text").textContent = info.status === "queued" ? "queued…"
    : `${stage}${info.detail ? ` (${info.detail})` : ""} · ${pct}`;
  // the main area says so too, where the eye is; after `scored` the graph is there already
  const scored = info.stage === "faithfulness curve" || info.stage === "mib";
  $("run-status").textContent = info.status === "queued" ? "Attribution queued…"
    : scored ? `Scores ready · ${stage} · ${pct}` : `Attribution running: ${stage} · ${pct}`;
  $("run-status").hidden = false;
}

/**
 * Follow run `id` with the progress bar (while queued, attributing, and computing its curve and MIB
 * scores); the explorer draws it at `scored`, fills the chart from its events and takes its end.
 */
export function follow(id) {
  app.stopFollow?.();
  app.following = id;
  $("run-progress").hidden = false;
  updateRunButton();
  setProgress({ status: "queued", progress: 0 });
  app.stopFollow = api.followRun(id, {
    onProgress: (info) => { if (info.status === "queued" || info.status === "running") setProgress(info); },
    onScored: (run) => { refreshRuns(); hooks.onScored({ id, ...run }); },
    onCurve: (p) => hooks.onEvent(id, "curve", p),
    onMib: (m) => hooks.onEvent(id, "mib", m),
    onEnd: (run) => {
      app.following = null;
      app.stopFollow = null;
      $("run-progress").hidden = true;
      $("run-status").hidden = true;
      updateRunButton();
      refreshRuns();
      if (run.status === "failed") showRunError(`Run failed: ${run.error ?? "see the server log"}`);
      else if (run.status === "cancelled") toast("Run cancelled");
      hooks.onEnd({ id, ...run });
    },
  });
}
