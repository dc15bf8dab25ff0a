// Pure: the Model select's groups (GET /api/models' `source`) and the Dtype choices of a model.

/** Where a model comes from, as the Model select's groups say it, in this order. */
export const SOURCES = [
  ["zoo", "Bundled"],
  ["local", "Local checkpoints"],
  ["cache", "Hugging Face cache"],
  ["hub", "Hugging Face hub (download)"],
];

/** 1234567 → "1.2 MB" (powers of 1000, as download sizes are given). */
export function formatBytes(n) {
  if (!Number.isFinite(n) || n < 0) return "";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0, x = n;
  while (x >= 1000 && i < units.length - 1) { x /= 1000; i++; }
  return `${i === 0 ? x : x.toPrecision(x >= 100 ? 3 : 2)} ${units[i]}`;
}

/** The option text: its name, then its size on disk and whether it must be downloaded first. */
export function modelLabel(m) {
  const size = m.size_bytes != null ? formatBytes(m.size_bytes) : "";
  const extra = [size, m.download_needed ? "download needed" : ""].filter(Boolean).join(", ");
  return extra ? `${m.name} · ${extra}` : m.name;
}

/**
 * The select's groups: [{label, source, models: [m]}] in SOURCES order, then any other source under
 * its own name; empty groups left out; models keep the server's order within a group.
 */
export function modelGroups(models) {
  const known = new Map(SOURCES);
  const order = [...known.keys()];
  const groups = new Map();
  for (const m of models) {
    const src = m.source ?? "zoo";
    if (!groups.has(src)) groups.set(src, { source: src, label: known.get(src) ?? src, models: [] });
    groups.get(src).models.push(m);
  }
  const rank = (src) => (order.includes(src) ? order.indexOf(src) : order.length);
  return [...groups.values()].sort((a, b) => rank(a.source) - rank(b.source));
}

/** The dtypes a run of model m may ask for: the model's list (float32 first), else float32 alone. */
export function dtypeOptions(m) {
  const list = Array.isArray(m?.dtypes) && m.dtypes.length ? m.dtypes : ["float32"];
  return [...new Set(list)].sort((a, b) => (b === "float32") - (a === "float32"));
}
