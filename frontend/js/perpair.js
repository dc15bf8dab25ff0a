// Pure: the per-pair table (GET /api/runs/{id}/pairs): what to ask for at a selection, which token
// positions a pair's corrupted prompt changes, and how a row's numbers read.
import { selectionSpec } from "./select.js";

/** Rows the table asks for: the worst ones; the rest are rarely read and cost the page's time. */
export const PAIRS_SHOWN = 200;

/** The /pairs query of a selection (as /circuit and /edges take it), with the row limit. */
export function pairsQuery(sel, limit = PAIRS_SHOWN) {
  const spec = selectionSpec(sel);
  if (sel.rule === "own") spec.own = true;
  return { ...spec, limit };
}

/** Positions where the corrupted prompt's token differs from the clean one's. */
export function changedPositions(cleanTokens, corruptedTokens) {
  const out = [];
  const n = Math.max(cleanTokens.length, corruptedTokens.length);
  for (let i = 0; i < n; i++) if (cleanTokens[i] !== corruptedTokens[i]) out.push(i);
  return out;
}

/** A token as a chip shows it: line breaks and tabs made visible (spaces stay: chips keep white space). */
export function showToken(t) {
  return String(t).replace(/\n/g, "⏎").replace(/\t/g, "⇥");
}

/** A pair's normalized faithfulness for the table (2 decimals), "n/a" when clean = corrupted. */
export function formatNormalized(x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "n/a";
  const s = x.toFixed(2);
  return s === "-0.00" ? "0.00" : s;
}

/** The table's caption: how many pairs, and which ones the rows are. */
export function pairsCaption(shown, total, nEdges) {
  const of = shown < total ? `the ${shown} worst of ${total.toLocaleString("en-US")} pairs`
    : `${total} ${total === 1 ? "pair" : "pairs"}, worst first`;
  return `${of}, with the circuit of ${nEdges} ${nEdges === 1 ? "edge" : "edges"}`;
}
