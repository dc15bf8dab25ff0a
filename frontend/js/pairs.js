// Pure: prompt pairs on the page before the server sees them: read a CSV/JSONL/JSON text the way
// edgewise.data.parse_records does (rows 1-based over records), flag what the server accepts but a
// person should know (answer == wrong_answer), and say why "Run attribution" cannot start yet.

const FIELDS = ["clean", "corrupted", "answer", "wrong_answer"];
const ALIASES = { corrupt: "corrupted", label: "answer", correct: "answer", answers: "answer",
  incorrect: "wrong_answer", distractor: "wrong_answer", wrong_answers: "wrong_answer" };

/** RFC 4180 CSV (quoted cells may hold commas, quotes as "", newlines) → array of rows (arrays). */
export function parseCsv(text) {
  const rows = [];
  let row = [], cell = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; }
      else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"' && cell === "") quoted = true;
    else if (c === ",") { row.push(cell); cell = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(cell); rows.push(row); row = []; cell = "";
    } else cell += c;
  }
  if (quoted) throw new Error("unterminated quoted cell");
  if (cell !== "" || row.length) { row.push(cell); rows.push(row); }
  return rows.filter((r) => r.length > 1 || r[0] !== "");
}

/** Records from a pairs file's text; the format from the name, else sniffed. Throws on malformed input. */
export function parseRecords(text, filename = "") {
  const t = text.replace(/^\uFEFF/, "").trim();
  if (!t) throw new Error("file is empty");
  const ext = filename.includes(".") ? filename.toLowerCase().split(".").pop() : "";
  if (ext === "csv" || (ext !== "json" && ext !== "jsonl" && !"[{".includes(t[0]))) {
    const [header, ...rows] = parseCsv(t);
    return rows.map((r) => Object.fromEntries(header.map((h, i) => [h, r[i]])));
  }
  if (ext === "jsonl" || (ext !== "json" && t[0] === "{" && t.includes("\n{"))) {
    return t.split(/\r?\n/).filter((l) => l.trim()).map((l) => JSON.parse(l));
  }
  const obj = JSON.parse(t);
  if (Array.isArray(obj)) return obj;
  for (const key of ["pairs", "prompts"]) if (Array.isArray(obj?.[key])) return obj[key];
  throw new Error('JSON must be a list of records or an object with a "pairs" list');
}

/** A record with the four field names (aliases mapped, one-element answer lists unwrapped). */
export function normalizeRecord(rec) {
  const out = {};
  if (!rec || typeof rec !== "object" || Array.isArray(rec)) return out;
  for (const [key, value] of Object.entries(rec)) {
    const k = key.trim().toLowerCase();
    const name = ALIASES[k] ?? k;
    if (!FIELDS.includes(name)) continue;
    const list = Array.isArray(value) && value.length === 1 && typeof value[0] !== "number";
    out[name] = list ? value[0] : value;
  }
  return out;
}

/**
 * What the server accepts but makes a pair useless: answer equal to wrong_answer (its logit
 * difference is 0 whatever the circuit). Returns [{row, field, message}], rows 1-based.
 */
export function checkPairs(records) {
  const out = [];
  records.forEach((raw, i) => {
    const r = normalizeRecord(raw);
    if (r.answer === undefined || r.answer === "" || r.wrong_answer === undefined) return;
    if (JSON.stringify(r.answer) === JSON.stringify(r.wrong_answer)) {
      out.push({ row: i + 1, field: "wrong_answer",
        message: `same as answer (${JSON.stringify(r.answer)}): this pair's logit difference is always 0` });
    }
  });
  return out;
}

/** "row 3, field "wrong_answer": …" (the server's wording). */
export function formatIssue({ row, field, message }) {
  const where = [row != null ? `row ${row}` : "", field ? `field "${field}"` : ""].filter(Boolean).join(", ");
  return where ? `${where}: ${message}` : message;
}

/**
 * Why "Run attribution" cannot start, or null when it can. st: {running, source, checking, dataset,
 * model} — source: pairs chosen; dataset: the server's answer for them (null when rejected).
 */
export function runBlocker(st) {
  if (st.running) return "A run is in progress: wait for it or cancel it.";
  if (!st.source) return "No prompt pairs yet: load an example, choose a file or paste pairs.";
  if (st.checking) return "Checking the prompt pairs…";
  if (!st.dataset) return "The prompt pairs were rejected: fix the errors listed above.";
  if (st.dataset.model !== st.model) return "The pairs were checked for another model: checking them again…";
  return null;
}
