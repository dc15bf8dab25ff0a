// The "Prompt pairs" table under the charts: the open run's pairs with their tokens and the clean,
// corrupted and circuit metric at the current selection (GET /pairs), worst first; refreshed when the
// slider is released (explorer.js's commit). Each number cell keeps its full value in data-value.
import * as api from "./api.js";
import { app } from "./app.js";
import { formatScore } from "./format.js";
import { h } from "./panels.js";
import { changedPositions, formatNormalized, pairsCaption, pairsQuery, showToken } from "./perpair.js";
import { selectionKey } from "./select.js";

const $ = (id) => document.getElementById(id);
const CACHE = 16;  // answers kept (run × selection): going back along the slider costs nothing

const cache = new Map();
let ctrl = null;  // the request in flight
let retry = null;

/** No run: the table goes. */
export function clearPairs() {
  ctrl?.abort();
  clearTimeout(retry);
  $("pairs-card").hidden = true;
  $("pairs-body").replaceChildren();
}

function note(text, kind = "") {
  $("pairs-note").textContent = text;
  $("pairs-note").className = `hint ${kind}`.trim();
}

/** Fetch (or take from the cache) and show the open run's pairs at its current selection. */
export async function refreshPairs() {
  clearTimeout(retry);
  const run = app.run;
  if (!run) return clearPairs();
  $("pairs-card").hidden = false;
  const key = `${run.id}|${selectionKey(app.sel)}`;
  const current = () => app.run === run && `${run.id}|${selectionKey(app.sel)}` === key;
  if (cache.has(key)) return render(cache.get(key));
  ctrl?.abort();
  ctrl = new AbortController();
  $("pairs-card").setAttribute("aria-busy", "true");
  note("computing each pair's metric with this circuit…");
  try {
    const res = await api.pairs(run.id, pairsQuery(app.sel), ctrl.signal);
    cache.set(key, res);
    if (cache.size > CACHE) cache.delete(cache.keys().next().value);
    if (current()) render(res);
  } catch (e) {
    if (e.name === "AbortError" || !current()) return;
    $("pairs-card").removeAttribute("aria-busy");
    if (e.status === 503) {  // the device computes another run's attribution: try again when it says
      const s = Math.min(60, e.retryAfter ?? 5);
      note(`The device is busy (${e.message}); trying again in ${s} s.`, "warn");
      retry = setTimeout(() => { if (current()) refreshPairs(); }, s * 1000);
    } else {
      $("pairs-body").replaceChildren();
      note(e.status === 409 ? `No per-pair view: ${e.message}` : `Could not compute the per-pair metrics: ${e.message}`, "warn");
    }
  }
}

const num = (x, cls = "num") => h("td", { class: cls, "data-value": x === null || x === undefined ? "" : String(x) }, formatScore(x));

/** A prompt as token chips; the positions the corrupted prompt changes are marked, with its token. */
function tokens(p) {
  const changed = new Set(changedPositions(p.clean_tokens, p.corrupted_tokens));
  return h("td", { class: "prompt", title: `clean: ${fmtText(p.clean)}\ncorrupted: ${fmtText(p.corrupted)}` },
    p.clean_tokens.map((t, i) => (changed.has(i)
      ? h("span", { class: "tok diff", title: `corrupted: ${JSON.stringify(p.corrupted_tokens[i] ?? "")}` },
        showToken(t), h("span", { class: "to" }, `→${showToken(p.corrupted_tokens[i] ?? "")}`))
      : h("span", { class: "tok" }, showToken(t)))));
}

const fmtText = (t) => (Array.isArray(t) ? `[${t.join(", ")}]` : String(t));

function render(res) {
  $("pairs-card").removeAttribute("aria-busy");
  const rows = res.pairs ?? [];
  note(`${pairsCaption(rows.length, res.n_pairs ?? rows.length, res.n_edges)} · metric ${res.metric ?? ""}`.trim());
  $("pairs-body").replaceChildren(...rows.map((p) => {
    const bad = Number.isFinite(p.normalized) && p.normalized < 0.5;
    return h("tr", { "data-index": String(p.index) },
      h("td", { class: "num idx" }, String(p.index + 1)),
      tokens(p),
      h("td", { class: "answers" }, p.answer === null || p.answer === undefined ? "—"
        : [h("span", { class: "tok ans" }, showToken(fmtText(p.answer))), " vs ", h("span", { class: "tok" }, showToken(fmtText(p.wrong_answer)))]),
      num(p.metric_clean), num(p.metric_corrupted), num(p.metric_circuit, "num circuit"),
      h("td", { class: `num norm${bad ? " bad" : ""}`, "data-value": p.normalized === null ? "" : String(p.normalized) },
        formatNormalized(p.normalized)));
  }));
}
