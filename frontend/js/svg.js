// Pure: the circuit as a standalone SVG (Export SVG; Export PNG rasterizes the same picture), with
// the run's metadata above the graph and the legend below it. No hover or selection state: the
// picture comes from the geometry and the looks, not from what the pointer did.

const FONT = "Inter, ui-sans-serif, system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif";
const NODE_LOOK = {
  head: { fill: "#ffffff", stroke: "#94a3b8", rx: 6, text: "#1e293b", weight: 400 },
  mlp: { fill: "#f1f5f9", stroke: "#64748b", rx: 0, text: "#1e293b", weight: 400 },
  input: { fill: "#1e293b", stroke: "#1e293b", rx: 8, text: "#ffffff", weight: 600 },
  logits: { fill: "#1e293b", stroke: "#1e293b", rx: 8, text: "#ffffff", weight: 600 },
};

export function esc(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

const num = (x) => (Math.round(x * 100) / 100).toString();
// rough text width (px) of a sans-serif font: enough to lay the legend out in rows without a DOM
const textWidth = (s, size) => s.length * size * 0.56;

function edgePath(e) {
  const [sx, sy, cx, cy, tx, ty] = e.path;
  return cx === null ? `M${num(sx)} ${num(sy)}L${num(tx)} ${num(ty)}` : `M${num(sx)} ${num(sy)}Q${num(cx)} ${num(cy)} ${num(tx)} ${num(ty)}`;
}

/** Extremes of a quadratic Bézier along one axis (s, c, t: start, control, end). */
function quadRange(s, c, t) {
  const lo = Math.min(s, t), hi = Math.max(s, t);
  if (c >= lo && c <= hi) return [lo, hi];
  const u = (s - c) / (s - 2 * c + t);  // where the derivative 2(1−u)(c−s) + 2u(t−c) is 0
  const v = (1 - u) ** 2 * s + 2 * u * (1 - u) * c + u * u * t;
  return [Math.min(lo, v), Math.max(hi, v)];
}

/** The box around nodes and edge curves (the curves' extremes, not their control points). */
export function bounds({ nodes, edges }) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  const take = (x, y) => { x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y); };
  for (const n of nodes) { take(n.x - n.w / 2, n.y - n.h / 2); take(n.x + n.w / 2, n.y + n.h / 2); }
  for (const e of edges) {
    const [sx, sy, cx, cy, tx, ty] = e.path;
    take(sx, sy); take(tx, ty);
    if (cx === null) continue;
    const [xa, xb] = quadRange(sx, cx, tx), [ya, yb] = quadRange(sy, cy, ty);
    take(xa, ya); take(xb, yb);
  }
  return nodes.length || edges.length ? { x0, y0, x1, y1 } : { x0: 0, y0: 0, x1: 0, y1: 0 };
}

/** Legend items → rows of {x, item} that fit `width` (px). */
function legendRows(items, width, size) {
  const rows = [[]];
  let x = 0;
  for (const it of items) {
    const w = 30 + textWidth(it.text, size) + 18;
    if (x > 0 && x + w > width) { rows.push([]); x = 0; }
    rows[rows.length - 1].push({ x, item: it });
    x += w;
  }
  return rows;
}

function legendSwatch(it, x, y) {
  if (it.kind === "line") {
    const dash = it.dash ? ` stroke-dasharray="${it.dash.join(" ")}"` : "";
    const under = it.ring ? `<line x1="${x}" y1="${y}" x2="${x + 24}" y2="${y}" stroke="${it.ring}" stroke-opacity="0.45" stroke-width="9" stroke-linecap="round"/>` : "";
    return `${under}<line x1="${x}" y1="${y}" x2="${x + 24}" y2="${y}" stroke="${it.color}" stroke-width="${it.width ?? 3}"${dash}/>`;
  }
  return "";
}

/**
 * The SVG text. geometry: GraphView.geometry(); meta: lines of text for the header (first is the
 * title); legend: [{text, color, dash?, width?, ring?}] drawn as line swatches.
 */
export function circuitSvg(geometry, { meta = [], legend = [] } = {}) {
  const pad = 24, size = 13;
  const b = bounds(geometry);
  const gw = b.x1 - b.x0, gh = b.y1 - b.y0;
  const width = Math.ceil(Math.max(gw + 2 * pad, 760));
  const headH = meta.length ? 16 + meta.length * 20 : 0;
  const rows = legendRows(legend.map((l) => ({ kind: "line", ...l })), width - 2 * pad, size);
  const legH = legend.length ? rows.length * 22 + 16 : 0;
  const height = Math.ceil(headH + gh + 2 * pad + legH);
  const ox = (width - gw) / 2 - b.x0, oy = headH + pad - b.y0;

  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${esc(FONT)}">`);
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  meta.forEach((line, i) => {
    const weight = i === 0 ? 700 : 400, fs = i === 0 ? 15 : size;
    out.push(`<text class="meta" x="${pad}" y="${24 + i * 20}" font-size="${fs}" font-weight="${weight}" fill="${i === 0 ? "#0f172a" : "#334155"}">${esc(line)}</text>`);
  });
  out.push(`<g transform="translate(${num(ox)} ${num(oy)})">`);
  out.push(`<g class="edges" fill="none" stroke-linecap="round">`);
  const drawOrder = [...geometry.edges].sort((a, b2) => (a.ghost === b2.ghost ? a.width - b2.width : a.ghost ? -1 : 1));
  for (const e of drawOrder) {
    const d = edgePath(e);
    if (e.truth) out.push(`<path d="${d}" stroke="#009E73" stroke-opacity="0.45" stroke-width="${num(e.width + 7)}"/>`);
    const dash = e.dash ? ` stroke-dasharray="${e.dash.join(" ")}"` : "";
    const attr = e.ghost ? `data-ghost="${esc(e.id.replace(/^ghost:/, ""))}"` : `data-edge="${esc(e.id)}"`;
    out.push(`<path ${attr} d="${d}" stroke="${e.color}" stroke-opacity="${num(e.opacity)}" stroke-width="${num(e.width)}"${dash}/>`);
  }
  out.push("</g>", `<g class="nodes" font-size="10" text-anchor="middle" dominant-baseline="central">`);
  for (const n of geometry.nodes) {
    const look = NODE_LOOK[n.kind] ?? NODE_LOOK.head;
    const op = n.idle ? ` opacity="0.28"` : "";
    out.push(`<g data-node="${esc(n.id)}"${op}><rect x="${num(n.x - n.w / 2)}" y="${num(n.y - n.h / 2)}" width="${num(n.w)}" height="${num(n.h)}" rx="${look.rx}" fill="${look.fill}" stroke="${look.stroke}" stroke-width="1.5"/>`
      + `<text x="${num(n.x)}" y="${num(n.y)}" fill="${look.text}" font-weight="${look.weight}">${esc(n.label)}</text></g>`);
  }
  out.push("</g>", "</g>");
  if (legend.length) {
    const y0 = headH + gh + 2 * pad + 8;
    out.push(`<g class="legend" font-size="${size}" fill="#334155">`);
    rows.forEach((row, r) => {
      for (const { x, item } of row) {
        const y = y0 + r * 22 + 8;
        out.push(legendSwatch(item, pad + x, y), `<text x="${num(pad + x + 30)}" y="${y}" dominant-baseline="central">${esc(item.text)}</text>`);
      }
    });
    out.push("</g>");
  }
  out.push("</svg>");
  return out.join("\n");
}
