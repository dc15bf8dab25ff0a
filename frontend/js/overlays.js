// The two overlays on the open run: compare with another run of the same model (B), and the known
// circuit of the model's bundled task; their legend, the numbers under the title and the ROC chart.
// The explorer hands in what redraws the view (initOverlays).
import { app } from "./app.js";
import * as api from "./api.js";
import { compareCandidates, loadCompare, runLabel } from "./compare.js";
import { formatInt, formatRatio } from "./format.js";
import { h, toast } from "./panels.js";
import { loadTruth, truthRoc, truthStats } from "./truth.js";

const $ = (id) => document.getElementById(id);

let chart, rocChart, hooks;

/** charts: the faithfulness and ROC charts; h: {applyScale, refresh, commit, syncUrl} of the explorer. */
export function initOverlays(charts, h2) {
  ({ chart, rocChart } = charts);
  hooks = h2;
}

/** Every edge of the open run (Spearman, ROC), fetched once. */
export async function ensureAll() {
  if (app.all) return app.all;
  const id = app.run.id;
  const all = (await api.edges(id)).edges;
  if (String(app.run?.id) === String(id)) {
    app.all = all;
    app.allScores = new Map(all.map((e) => [e.name, e.score]));
  }
  return all;
}

/** The "Compare with" choices: finished runs of the same model. */
export function fillCompare() {
  const sel = $("compare");
  if (!app.run) return;
  const cands = compareCandidates(app.runs, app.run);
  if (app.cmp && !cands.some((r) => String(r.id) === String(app.cmp.run.id))) cands.unshift(app.cmp.run);
  sel.replaceChildren(new Option(cands.length ? "none" : "no other run", ""),
    ...cands.map((r) => new Option(runLabel(r), r.id)));
  sel.value = app.cmp ? String(app.cmp.run.id) : "";
  sel.disabled = cands.length === 0;
  sel.title = app.cmp ? `B = ${runLabel(app.cmp.run)}` : "Another finished run of the same model: its circuit at the same size, coloured A only / B only / both";
}

export async function setCompare(id, updateUrl = true) {
  if (!id) {
    app.cmp = null;
    chart.setCompare(null);
  } else {
    const runId = app.run.id;
    $("compare").disabled = true;
    try {
      const [cmp] = await Promise.all([loadCompare(id), ensureAll()]);
      if (String(app.run?.id) !== String(runId)) return;
      const model = (r) => r.model ?? r.meta?.model;
      if (model(cmp.run) !== model(app.run) || cmp.all.length !== app.all.length) {
        throw new Error(`run ${id} is of model ${model(cmp.run)} (${formatInt(cmp.all.length)} edges), this one of ${model(app.run)}`);
      }
      app.cmp = cmp;
      chart.setCompare(cmp.curve, { a: `A #${app.run.id}`, b: `B #${cmp.run.id}` });
    } catch (e) {
      toast(`Cannot compare with run ${id}: ${e.message}`, "error");
      app.cmp = null;
    } finally {
      fillCompare();
    }
  }
  showCompareLegend();
  hooks.applyScale();
  hooks.refresh();
  if (updateUrl) hooks.syncUrl();
  hooks.commit(false);
}

export function showCompareLegend() {
  $("legend-sign").hidden = !!app.cmp;
  $("legend-compare").hidden = !app.cmp;
}

export async function loadOverlay(run) {
  const t = await loadTruth(app.tasks, run);
  if (app.run !== run) return;
  if (t) {
    await ensureAll();
    if (app.run !== run) return;
    t.roc = truthRoc(app.all, t.names);
    t.on = $("truth").checked;
    app.truth = t;
  }
  showTruth();
  hooks.refresh();
}

/** The known-circuit toggle, legend and ROC chart, as app.truth says. */
export function showTruth() {
  const t = app.truth;
  $("truth-line").hidden = !t;
  $("legend-truth").hidden = !t?.on;
  const rocOn = !!(t?.on && t.roc);
  if ($("roc-wrap").hidden === rocOn) {  // the faithfulness chart gives or takes the ROC's room
    $("roc-wrap").hidden = !rocOn;
    chart.resize();
  }
  if (rocOn) rocChart.set(t.roc, truthStats(app.shown.map((e) => e.name), t.names, t.roc).point);
}

/** The line under the title: compare numbers and known-circuit numbers. */
export function renderInsights(cmpStats, truth) {
  const c = $("compare-stats"), k = $("truth-stats");  // k sits in #truth-line, after the toggle
  c.hidden = !cmpStats;
  if (cmpStats) {
    const { classes, jaccard, rho } = cmpStats;
    const num = (key, n) => h("strong", { "data-count": key }, String(n));
    const bWhat = app.cmp.run.method === "imported" ? "imported" : app.cmp.run.method;
    c.title = `B = ${runLabel(app.cmp.run)}`;
    c.replaceChildren(h("span", { class: "muted" }, "B = "), `#${app.cmp.run.id} ${bWhat}:  `,
      h("i", { class: "swatch a" }), " A only ", num("a", classes.a.length), " · ",
      h("i", { class: "swatch both" }), " both ", num("both", classes.both.length), " · ",
      h("i", { class: "swatch b" }), " B only ", num("b", classes.b.length), " · top-k Jaccard ",
      h("strong", { "data-stat": "jaccard" }, jaccard === null ? "—" : jaccard.toFixed(2)), " · Spearman ρ ",
      h("strong", { "data-stat": "spearman", title: rho?.n ? `over all ${formatInt(rho.n)} edges` : "" },
        rho?.rho === null || rho?.rho === undefined ? "—" : rho.rho.toFixed(3)));
  }
  k.hidden = !truth;
  if (!truth) k.replaceChildren();
  if (truth) {
    const names = app.shown.map((e) => e.name);
    const st = truthStats(names, truth, app.truth.roc);
    k.replaceChildren(`of ${app.truth.task} (${truth.size} edges): precision `,
      h("strong", { "data-stat": "precision" }, formatRatio(st.tp, names.length)), " · recall ",
      h("strong", { "data-stat": "recall" }, formatRatio(st.tp, truth.size)),
      app.truth.roc ? " · ROC AUC " : "", app.truth.roc ? h("strong", { "data-stat": "auc" }, app.truth.roc.auc.toFixed(3)) : "");
    rocChart.mark(st.point);
  }
  $("insights").hidden = c.hidden && $("truth-line").hidden;
}
