// Past runs: the list a page at a time (X-Total-Count), each run opened, renamed (PATCH), deleted
// (DELETE, after a second click) or, while it is queued or running, cancelled.
import * as api from "./api.js";
import { app } from "./app.js";
import { formatAge, formatInt } from "./format.js";
import { h, runSettings, toast } from "./panels.js";

const $ = (id) => document.getElementById(id);
export const PAGE = 20;     // runs per page of the list
const KNOWN = 200;          // newest runs kept in app.runs (compare choices, titles)
const CONFIRM_MS = 4000;    // a first click on Delete asks again for this long

let hooks = { open: () => {}, deleted: () => {}, changed: () => {} };

/** hooks: open(id), deleted(id) (the explorer closes it if open), changed() (the compare choices). */
export function wireRuns(h2) {
  hooks = { ...hooks, ...h2 };
  $("runs-newer").addEventListener("click", () => { app.runsOffset = Math.max(0, app.runsOffset - PAGE); refreshRuns(); });
  $("runs-older").addEventListener("click", () => { app.runsOffset += PAGE; refreshRuns(); });
}

/** Fetch the newest runs (and the page shown, if further back) and the dataset names; redraw the list. */
export async function refreshRuns() {
  try {
    const [known, datasets] = await Promise.all([api.listRuns({ limit: KNOWN }), api.datasets().catch(() => null)]);
    app.runs = known.runs;
    app.runsTotal = known.total;
    if (app.runsOffset >= known.total) app.runsOffset = Math.max(0, Math.floor((known.total - 1) / PAGE) * PAGE);
    app.runsPage = app.runsOffset + PAGE <= KNOWN ? known.runs.slice(app.runsOffset, app.runsOffset + PAGE)
      : (await api.listRuns({ limit: PAGE, offset: app.runsOffset })).runs;
    if (Array.isArray(datasets)) app.datasets = new Map(datasets.map((d) => [d.id, d]));
  } catch { /* keep the list we have */ }
  renderRuns();
  hooks.changed();
}

/** A run just created: shown at once, before the next refresh. */
export function addRun(run) {
  app.runs = [run, ...app.runs.filter((r) => r.id !== run.id)];
  if (app.runsOffset === 0) app.runsPage = [run, ...app.runsPage.filter((r) => r.id !== run.id)].slice(0, PAGE);
  app.runsTotal += 1;
  renderRuns();
}

function runTitle(r) {
  const what = r.method === "imported" ? `imported · ${r.model ?? r.meta?.model ?? "circuit"}` : `${r.model ?? "?"} · ${r.method ?? "?"}`;
  return r.name ? { title: r.name, what } : { title: what, what: null };
}

/** The list (the current page), the open run marked. */
export function renderRuns() {
  const runs = app.runsPage ?? [];
  $("runs").replaceChildren(...runs.map((r) => runItem(r)));
  $("runs-empty").hidden = runs.length > 0;
  const total = app.runsTotal ?? runs.length;
  $("runs-pager").hidden = total <= PAGE && app.runsOffset === 0;
  $("runs-range").textContent = runs.length ? `${formatInt(app.runsOffset + 1)}–${formatInt(app.runsOffset + runs.length)} of ${formatInt(total)}` : "";
  $("runs-newer").disabled = app.runsOffset === 0;
  $("runs-older").disabled = app.runsOffset + runs.length >= total;
}

function runItem(r) {
  const { title, what } = runTitle(r);
  const st = runSettings(r, app.datasets);
  const dtype = r.dtype && r.dtype !== "float32" ? r.dtype : null;
  const sub = [what, r.metric, st.ablation, st.steps, dtype, st.dataset, formatAge(r.created_at), `#${r.id}`].filter(Boolean).join(" · ");
  const warn = r.warnings?.length ? h("span", { class: "warn-mark", title: r.warnings.join("\n"),
    "aria-label": `${r.warnings.length} warning${r.warnings.length === 1 ? "" : "s"}` }, "⚠") : null;
  const current = String(r.id) === String(app.run?.id);
  const open = h("button", { type: "button", class: "open", "aria-current": current ? "true" : "false",
    title: r.error ? `error: ${r.error}` : `open run ${r.id}`, onclick: () => hooks.open(r.id) },
  h("span", { class: "title" }, title, warn ? " " : null, warn), h("span", { class: `badge ${r.status}` }, r.status ?? ""),
  h("span", { class: "sub" }, sub));
  const li = h("li", { "data-run": r.id }, open);
  const active = r.status === "queued" || r.status === "running";
  li.append(h("div", { class: "run-actions" },
    h("button", { type: "button", class: "link small", "aria-label": `Rename run ${r.id}`, title: "Rename", onclick: () => startRename(li, r) }, "Rename"),
    active ? h("button", { type: "button", class: "link small", "aria-label": `Cancel run ${r.id}`, onclick: () => cancel(r) }, "Cancel")
      : h("button", { type: "button", class: "link small danger", "aria-label": `Delete run ${r.id}`, title: "Delete the run and its scores",
        onclick: (ev) => askDelete(ev.currentTarget, r) }, "Delete")));
  return li;
}

function startRename(li, r) {
  const input = h("input", { type: "text", class: "rename", maxlength: "200", value: r.name ?? "", "aria-label": `Name of run ${r.id}`,
    placeholder: runTitle({ ...r, name: null }).title });
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const name = input.value.trim();
    if (save && name !== (r.name ?? "")) {
      try {
        const run = await api.renameRun(r.id, name || null);
        for (const list of [app.runs, app.runsPage]) { const i = list.findIndex((x) => x.id === r.id); if (i >= 0) list[i] = { ...list[i], name: run.name }; }
        if (String(app.run?.id) === String(r.id)) app.run = { ...app.run, name: run.name };
        hooks.changed();
      } catch (e) {
        toast(`Rename failed: ${e.message}`, "error");
      }
    }
    renderRuns();
  };
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); finish(true); } else if (ev.key === "Escape") { ev.preventDefault(); finish(false); }
  });
  input.addEventListener("blur", () => finish(true));
  li.querySelector(".title").replaceChildren(input);
  li.querySelector("button.open").disabled = true;  // typing a space must not open the run
  input.focus();
  input.select();
}

function askDelete(btn, r) {
  if (!btn.classList.contains("confirm")) {
    btn.classList.add("confirm");
    btn.textContent = "Delete?";
    btn.setAttribute("aria-label", `Confirm delete run ${r.id}`);
    setTimeout(() => {
      if (!btn.isConnected || !btn.classList.contains("confirm")) return;
      btn.classList.remove("confirm");
      btn.textContent = "Delete";
      btn.setAttribute("aria-label", `Delete run ${r.id}`);
    }, CONFIRM_MS);
    return;
  }
  btn.disabled = true;
  api.deleteRun(r.id).then(() => {
    toast(`Run #${r.id} deleted`);
    hooks.deleted(r.id);
  }, (e) => toast(`Delete failed: ${e.message}`, "error")).finally(refreshRuns);
}

async function cancel(r) {
  try {
    await api.cancelRun(r.id);
  } catch (e) {
    toast(`Cancel failed: ${e.message}`, "error");
  }
  refreshRuns();
}
