// DOM views beside the graph: dataset status and errors, run warnings and settings, the node panel,
// tooltip, toast. (The past-runs list is runs.js.)
import { capLines, formatInt, formatScore } from "./format.js";
import { parseNode } from "./layout.js";

const $ = (id) => document.getElementById(id);

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style") el.style.cssText = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}
export { h };

// ---------------------------------------------------------------- dataset
/** The server's answer for the pairs: count, its warnings and the page's own flags, a preview. */
export function showDataset(ds, label, flags = []) {
  const el = $("dataset-status");
  el.replaceChildren();
  if (!ds) return;
  const count = ds.count ?? ds.n_pairs ?? ds.preview?.length ?? 0;
  el.append(h("div", {}, h("span", { class: "ok" }, `✓ ${formatInt(count)} ${count === 1 ? "pair" : "pairs"} ready`),
    label ? h("span", { class: "muted" }, ` · ${label}`) : null));
  const warnings = [...(ds.warnings ?? []).map((w) => (typeof w === "string" ? w : JSON.stringify(w))), ...flags];
  const { shown, more } = capLines(warnings, 8);
  if (warnings.length) {
    el.append(h("ul", { class: "warn", "aria-label": "Warnings about the pairs" },
      shown.map((w) => h("li", {}, `⚠ ${w}`)), more ? h("li", { class: "muted" }, `… and ${more} more`) : null));
  }
  const rows = (ds.preview ?? []).slice(0, 3);
  if (rows.length) {
    const cols = ["clean", "corrupted", "answer", "wrong_answer"].filter((c) => rows.some((r) => r[c] !== undefined));
    const cell = (v) => (Array.isArray(v) ? `[${v.join(" ")}]` : String(v ?? ""));
    el.append(h("table", { class: "preview", "aria-label": "Preview of the first pairs" },
      h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, cols.map((c) => h("td", { title: cell(r[c]) }, cell(r[c]))))))));
  }
}

/**
 * Validation errors, at most `cap` listed, with the count. `partial`: the server stops at its first
 * error, so more may follow once this one is fixed.
 */
export function showErrors(lines, { cap = 10, partial = false } = {}) {
  const box = $("dataset-errors");
  const { shown, more, total } = capLines(lines, cap);
  $("dataset-errors-head").textContent = !total ? ""
    : partial ? `The server stopped at the first error${total > 1 ? "s" : ""}; fix ${total > 1 ? "them" : "it"} and check again:`
    : `${total} ${total === 1 ? "error" : "errors"}${more ? ` (the first ${cap} listed)` : ""}:`;
  $("dataset-errors-list").replaceChildren(...shown.map((l) => h("li", {}, l)), ...(more ? [h("li", { class: "muted" }, `… and ${more} more`)] : []));
  box.hidden = total === 0;
}

/** A finished run's warnings (e.g. kl with eap: scores ~0), above the graph. */
export function showRunWarnings(warnings = []) {
  const ul = $("run-warnings");
  ul.replaceChildren(...warnings.map((w) => h("li", {}, `⚠ ${w}`)));
  ul.hidden = warnings.length === 0;
}

// ---------------------------------------------------------------- runs
/** One line of what a run is: dataset, ablation, IG steps (for the list and the title). */
export function runSettings(r, datasets = new Map()) {
  const ds = datasets.get(r.dataset_id);
  const dsName = r.dataset_name ?? ds?.filename ?? (r.meta?.source_file || null);
  const nPairs = r.n_pairs ?? ds?.count ?? ds?.n_pairs ?? r.meta?.dataset?.n_pairs;
  const igSteps = typeof r.method === "string" && r.method.startsWith("eap-ig") && r.ig_steps ? `${r.ig_steps} steps` : null;
  return {
    dataset: dsName ? `${dsName}${nPairs ? ` (${formatInt(nPairs)} pairs)` : ""}` : nPairs ? `${formatInt(nPairs)} pairs` : null,
    ablation: r.method === "imported" ? null : r.ablation ?? null,
    steps: igSteps,
  };
}

// ---------------------------------------------------------------- node panel
export function describe(name) {
  const n = parseNode(name);
  if (!n) return name;
  if (n.kind === "head") return `attention head ${n.head} of layer ${n.layer}`;
  if (n.kind === "mlp") return `MLP of layer ${n.layer}`;
  if (n.kind === "input") return "token + positional embedding";
  return "unembedding (reads the final residual stream)";
}

/**
 * Show `name` with its incoming and outgoing edges among `loaded` (sorted by |score|), ranked, the
 * ones drawn marked. onJump(node) opens another node; onHoverEdge(name | null) follows the pointer
 * over the rows. Returns whether the panel was closed before.
 */
export function showNodePanel(name, loaded, shown, nTotal, onJump, onHoverEdge = () => {}) {
  const incoming = loaded.filter((e) => e.dst === name);
  const outgoing = loaded.filter((e) => e.src === name);
  const maxAbs = Math.max(1e-30, ...incoming.concat(outgoing).map((e) => Math.abs(e.score)));
  const nShownIn = incoming.filter((e) => shown.has(e.name)).length;
  const nShownOut = outgoing.filter((e) => shown.has(e.name)).length;
  $("node-title").textContent = name;
  $("node-sub").textContent = describe(name);
  const LIMIT = 30;
  const list = (edges, other, label) => {
    const items = edges.slice(0, LIMIT).map((e, i) => {
      const on = shown.has(e.name);
      const peer = other(e);
      return h("li", { class: on ? "on" : "off", title: `${e.name}: ${e.score}${on ? "" : " (not shown)"}`, "data-edge": e.name,
        onmouseenter: () => onHoverEdge(on ? e.name : null), onmouseleave: () => onHoverEdge(null) },
        h("button", { type: "button", class: "link", onclick: () => onJump(peer),
          onfocus: () => onHoverEdge(on ? e.name : null), onblur: () => onHoverEdge(null) }, `${i + 1}. ${peer}${e.qkv ? ` ‹${e.qkv}›` : ""}`),
        h("span", { class: `bar ${e.score < 0 ? "neg" : ""}`, style: `width:${Math.max(3, Math.round(60 * Math.abs(e.score) / maxAbs))}px` }),
        h("span", { class: "score" }, formatScore(e.score)));
    });
    return [h("h4", {}, label), items.length ? h("ul", { class: "edge-list" }, items) : h("p", { class: "hint" }, "none among the edges loaded"),
      edges.length > LIMIT ? h("p", { class: "hint" }, `… and ${edges.length - LIMIT} more`) : null];
  };
  const note = loaded.length < nTotal ? h("p", { class: "hint" }, `Ranked among the top ${formatInt(loaded.length)} of ${formatInt(nTotal)} edges; greyed ones are not shown at this threshold.`) : null;
  $("node-body").replaceChildren(...[
    ...list(incoming, (e) => e.src, `Incoming · ${nShownIn} of ${incoming.length} shown`),
    ...list(outgoing, (e) => e.dst, `Outgoing · ${nShownOut} of ${outgoing.length} shown`),
    note].filter(Boolean));
  const opened = $("node-panel").hidden;
  $("node-panel").hidden = false;
  return opened;
}

/** Returns whether the panel was open. */
export function hideNodePanel() {
  const was = !$("node-panel").hidden;
  $("node-panel").hidden = true;
  $("node-panel").parentElement.classList.remove("with-panel");
  return was;
}

// ---------------------------------------------------------------- tooltip, toast
export function showTooltip(info) {
  const tip = $("tooltip");
  if (!info) { tip.hidden = true; return; }
  if (info.kind === "edge") {
    tip.replaceChildren(h("span", {}, info.name), "  ", h("span", { class: info.score < 0 ? "neg" : "pos" }, formatScore(info.score)),
      info.ghost ? h("span", { class: "muted" }, "  known circuit, not shown") : null);
  } else {
    tip.replaceChildren(h("span", {}, info.name), h("span", { class: "muted" }, `  ${info.degree} edge${info.degree === 1 ? "" : "s"} shown`));
  }
  tip.hidden = false;
  const stage = tip.parentElement.getBoundingClientRect();
  const w = tip.offsetWidth;
  const x = Math.min(info.pos.x + 14, stage.width - w - 8);
  tip.style.left = `${Math.max(4, x)}px`;
  tip.style.top = `${Math.max(4, info.pos.y - 34)}px`;
}

let toastTimer = null;
export function toast(message, kind = "info") {
  const el = $("toast");
  el.textContent = message;
  el.className = `toast ${kind}`;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 7000 : 3500);
}

/** Save a Blob or text as a file download. */
export function download(data, filename, type = "application/json") {
  const blob = data instanceof Blob ? data : new Blob([data], { type });
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
