// Pure: text helpers shared by the views (numbers, API error details, pasted-pairs format).

/** A score for people: 3 significant digits, sign kept, exponent for tiny or huge values. */
export function formatScore(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a < 1e-3 || a >= 1e4) return x.toExponential(2).replace("e", "e");
  return x.toPrecision(3).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
}

export function formatInt(n) {
  return Number(n).toLocaleString("en-US");
}

/**
 * FastAPI error details → lines a person can act on. Handles a plain string, {row, field, message},
 * pydantic's [{loc, msg}], and lists of either.
 */
export function formatDetail(detail) {
  if (detail === null || detail === undefined) return [];
  if (typeof detail === "string") return [detail];
  if (Array.isArray(detail)) return detail.flatMap(formatDetail);
  if (typeof detail === "object") {
    const msg = detail.message ?? detail.msg ?? detail.detail ?? detail.error;
    if (detail.row !== undefined || detail.field !== undefined) {
      const where = [detail.row != null ? `row ${detail.row}` : "", detail.field ? `field "${detail.field}"` : ""]
        .filter(Boolean).join(", ");
      if (!where || String(msg ?? "").includes(where)) return [String(msg)];  // the message names them already
      return [`${where}: ${msg ?? ""}`.trim()];
    }
    if (Array.isArray(detail.loc)) {
      const loc = detail.loc.filter((x) => x !== "body" && x !== "query").join(".");
      return [loc ? `${loc}: ${msg}` : String(msg)];
    }
    if (Array.isArray(detail.errors)) return formatDetail(detail.errors);
    if (msg !== undefined) return formatDetail(msg);
    return [JSON.stringify(detail)];
  }
  return [String(detail)];
}

/** The format of pasted pairs, for the upload's file name: 'json', 'jsonl' or 'csv'. */
export function guessFormat(text) {
  const t = text.trim();
  if (t.startsWith("[")) return "json";
  if (t.startsWith("{")) {
    const lines = t.split(/\r?\n/).filter((l) => l.trim());
    if (lines.length > 1 && lines.every((l) => l.trim().startsWith("{") && l.trim().endsWith("}"))) return "jsonl";
    return "json";
  }
  return "csv";
}

/** "3 minutes ago"-style age of an ISO time or epoch seconds, for the runs list. */
export function formatAge(t, now = Date.now()) {
  if (t === null || t === undefined || t === "") return "";
  const ms = typeof t === "number" ? (t < 1e12 ? t * 1000 : t) : Date.parse(t);
  if (Number.isNaN(ms)) return "";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(ms).toISOString().slice(0, 10);
}

/** "1 edge shown", "40 edges shown" (the live count next to the slider). */
export function edgesShown(n) {
  return `${n} ${n === 1 ? "edge" : "edges"} shown`;  // plain digits: tests and screen readers read N
}

/** A normalized faithfulness with 3 decimals; never "-0.000" (a tiny negative rounds to 0.000). */
export function formatFaith(x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return "n/a";
  const s = x.toFixed(3);
  return /^-0\.0+$/.test(s) ? s.slice(1) : s;
}

/** A share as "0.62 (8/13)"; "—" when undefined. */
export function formatRatio(num, den) {
  return den ? `${(num / den).toFixed(2)} (${num}/${den})` : "—";
}

/**
 * At most `cap` lines, then one saying how many more: what a list of validation errors shows.
 * Returns {shown, more, total}.
 */
export function capLines(lines, cap = 10) {
  const shown = lines.slice(0, cap);
  return { shown, more: Math.max(0, lines.length - cap), total: lines.length };
}
