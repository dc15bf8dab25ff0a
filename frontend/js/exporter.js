// Export the shown circuit (JSON; SVG and PNG with legend and run metadata, drawn from the graph's
// geometry so no hover or selection state leaks in) and import a circuit file.
import * as api from "./api.js";
import { app } from "./app.js";
import { graphView, openRun } from "./explorer.js";
import { formatFaith, formatInt } from "./format.js";
import { refreshRuns } from "./runs.js";
import { COLORS, COMPARE_LEGEND, DASH, SIGN_LEGEND } from "./look.js";
import { download, runSettings, toast } from "./panels.js";
import { circuitForView, selectionKey, selectionSpec } from "./select.js";
import { circuitSvg } from "./svg.js";

const $ = (id) => document.getElementById(id);
const PNG_MAX_SIDE = 8000;  // px: larger canvases fail in some browsers

function fileStem() {
  const r = app.run, sel = app.sel;
  const what = sel.rule === "own" ? "imported" : sel.rule === "abs" ? `abs${app.shown.length}` : `top${sel.k}`;
  return [r.model ?? r.meta?.model, r.method, what, sel.connected ? "connected" : null]
    .filter(Boolean).join("-").replace(/[^\w.-]+/g, "_");
}

function selectionText() {
  const sel = app.sel, n = app.shown.length;
  const rule = sel.rule === "own" ? "the imported file's own edges"
    : sel.rule === "abs" ? `|score| ≥ ${sel.t.toPrecision(3)}` : `top ${sel.k} by |score|`;
  return `${n} ${n === 1 ? "edge" : "edges"} of ${formatInt(app.nTotal)}: ${rule}${sel.connected ? ", connected only" : ""}`;
}

/** Header lines of the picture: what was run on what, which edges, how faithful, when. */
export function exportMeta() {
  const r = app.run, st = runSettings(r, app.datasets);
  const ex = app.exact.get(selectionKey(app.sel));
  const lines = [
    `edgewise · circuit of ${r.model ?? r.meta?.model ?? "an imported model"}`,
    [r.method === "imported" ? `imported ${r.meta?.method ?? "circuit"}` : `method ${r.method}`, r.metric && `metric ${r.metric}`,
      st.ablation && `ablation ${st.ablation}`, st.steps && `IG ${st.steps}`, st.dataset && `dataset ${st.dataset}`, `run #${r.id}`]
      .filter(Boolean).join(" · "),
    `${selectionText()} · faithfulness ${ex ? formatFaith(ex.normalized) : "not computed"} · width ∝ √|score|`,
  ];
  if (!$("compare-stats").hidden) lines.push($("compare-stats").textContent.replace(/\s+/g, " ").trim());
  if (app.truth?.on) lines.push(`known circuit ${$("truth-stats").textContent.replace(/\s+/g, " ").trim()}`);
  lines.push(`exported ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC`);
  return lines;
}

/** Legend swatches of the picture, as the page's legend shows them. */
export function exportLegend() {
  const items = (app.cmp ? COMPARE_LEGEND : SIGN_LEGEND).map((l) => ({ text: l.text, color: l.color }));
  for (const q of ["q", "k", "v"]) items.push({ text: `${q} input`, color: "#334155", width: 2, dash: DASH[q] });
  if (app.truth?.on) {
    items.push({ text: "in the known circuit", color: "#334155", ring: COLORS.truth },
      { text: "known, not shown", color: COLORS.truth, width: 1.5, dash: [3, 3] });
  }
  return items;
}

export function currentSvg() {
  return circuitSvg(graphView().geometry(), { meta: exportMeta(), legend: exportLegend() });
}

async function exportJson() {
  if (!app.run) return;
  const names = app.shown.map((e) => e.name);
  const ex = app.exact.get(selectionKey(app.sel));
  const exact = ex ? { metric_clean: ex.metric_clean, metric_corrupted: ex.metric_corrupted, metric_circuit: ex.metric_circuit, normalized: ex.normalized } : null;
  if (app.sel.connected) return exportConnected(names, exact);
  const extra = { selection: selectionSpec(app.sel, app.run.meta?.selection ?? {}) };
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
  // the server's number is for its top-k prefix: keep it only when that is what is shown
  const prefix = app.sel.rule === "top_k";
  if (exact) extra.faithfulness = exact;
  else if (!prefix) delete base.faithfulness;
  download(JSON.stringify(circuitForView(base, names, extra), null, 1), `${fileStem()}.json`);
  toast(`Exported ${names.length} edges`);
}

/**
 * "connected" selections: the server's own file (GET /circuit?…&connected=true, the engine's
 * prune_connected), which holds exactly the drawn edges since prune.js computes the same prune.
 */
async function exportConnected(names, exact) {
  const spec = selectionSpec(app.sel);
  if (app.sel.rule === "own") spec.own = true;
  let file;
  try {
    file = await api.circuit(app.run.id, spec);
    if (typeof file === "string") file = JSON.parse(file);
  } catch (e) {
    toast(`Export failed: ${e.message}`, "error");
    return;
  }
  const kept = Object.entries(file.edges ?? {}).filter(([, e]) => e.in_graph).map(([n]) => n);
  const drawn = new Set(names);
  if (kept.length !== drawn.size || kept.some((n) => !drawn.has(n))) {
    toast(`The server's connected circuit (${kept.length} edges) differs from the ${drawn.size} drawn; exported the server's`, "error");
  }
  if (exact && kept.length === drawn.size && !file.faithfulness) file.faithfulness = exact;
  download(JSON.stringify(file, null, 1), `${fileStem()}.json`);
  toast(`Exported ${kept.length} edges (the server's connected selection)`);
}

function exportSvg() {
  if (!app.run) return;
  download(currentSvg(), `${fileStem()}.svg`, "image/svg+xml");
}

/** The SVG drawn on a canvas at `scale` (2: sharp on high-density screens), as a PNG Blob. */
export async function svgToPng(svg, scale = 2) {
  const [, w, hgt] = /width="(\d+)" height="(\d+)"/.exec(svg).map(Number);
  const s = Math.min(scale, PNG_MAX_SIDE / Math.max(w, hgt));
  const url = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
  try {
    const img = new Image();
    await new Promise((resolve, reject) => {
      img.onload = resolve;
      img.onerror = () => reject(new Error("the picture could not be drawn"));
      img.src = url;
    });
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(w * s);
    canvas.height = Math.round(hgt * s);
    const ctx = canvas.getContext("2d");
    ctx.scale(s, s);
    ctx.drawImage(img, 0, 0, w, hgt);
    return await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  } finally {
    URL.revokeObjectURL(url);
  }
}

async function exportPng() {
  if (!app.run) return;
  try {
    download(await svgToPng(currentSvg()), `${fileStem()}.png`, "image/png");
  } catch (e) {
    toast(`PNG export failed: ${e.message}`, "error");
  }
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
    toast(`Imported ${file.name}`);
    await refreshRuns();
    await openRun(res.id ?? res.run_id);
  } catch (e) {
    toast(`Import failed: ${e.message}`, "error");
  }
}

export function wireExport() {
  $("export-json").addEventListener("click", exportJson);
  $("export-svg").addEventListener("click", exportSvg);
  $("export-png").addEventListener("click", exportPng);
  $("import-circuit").addEventListener("change", () => {
    const file = $("import-circuit").files[0];
    $("import-circuit").value = "";
    if (file) importFile(file);
  });
}
