// Pure: node names, edge names and where each node sits (no DOM). Used by graph.js and node --test.
//
// Layered layout, left to right: input | a0 heads | m0 | a1 heads | m1 | … | logits.
// Heads of a layer are stacked in one column; the layer's MLP sits in a column of its own, half a
// layer further right (it reads after the heads write), level with the middle of the head stack.

const NODE_RE = /^(?:(input)|a(\d+)\.h(\d+)|m(\d+)|(logits))$/;

/** 'a3.h1' → {kind: 'head', layer: 3, head: 1}; 'm2' → {kind: 'mlp', layer: 2}; null if not a node name. */
export function parseNode(name) {
  const m = NODE_RE.exec(name);
  if (!m) return null;
  if (m[1]) return { kind: "input", layer: -1, head: null };
  if (m[5]) return { kind: "logits", layer: Infinity, head: null };
  if (m[2] !== undefined) return { kind: "head", layer: +m[2], head: +m[3] };
  return { kind: "mlp", layer: +m[4], head: null };
}

/** 'a0.h3->a2.h1<v>' → {src: 'a0.h3', dst: 'a2.h1', qkv: 'v'}; 'm1->logits' → {…, qkv: null}. */
export function parseEdge(name) {
  const i = name.indexOf("->");
  if (i < 0) return null;
  const src = name.slice(0, i);
  let dst = name.slice(i + 2);
  let qkv = null;
  const m = /^(.*)<([qkv])>$/.exec(dst);
  if (m) [dst, qkv] = [m[1], m[2]];
  return { src, dst, qkv };
}

/** Every node of a model shape, in forward order (the order sources write the residual stream). */
export function graphNodes({ n_layers, n_heads, attn_only = false }) {
  const names = ["input"];
  for (let L = 0; L < n_layers; L++) {
    for (let h = 0; h < n_heads; h++) names.push(`a${L}.h${h}`);
    if (!attn_only) names.push(`m${L}`);
  }
  names.push("logits");
  return names;
}

/** The model shape implied by a list of node or edge names (used when a run carries no cfg). */
export function inferConfig(names) {
  let n_layers = 0, n_heads = 0, hasMlp = false;
  for (const full of names) {
    const parts = full.includes("->") ? Object.values(parseEdge(full)).slice(0, 2) : [full];
    for (const p of parts) {
      const n = parseNode(p);
      if (!n) continue;
      if (n.kind === "head") { n_layers = Math.max(n_layers, n.layer + 1); n_heads = Math.max(n_heads, n.head + 1); }
      if (n.kind === "mlp") { n_layers = Math.max(n_layers, n.layer + 1); hasMlp = true; }
    }
  }
  return { n_layers, n_heads: Math.max(n_heads, 1), attn_only: !hasMlp };
}

export const SPACING = { layer: 190, row: 46 };

/**
 * Positions {name: {x, y}} for every node of the shape. x grows with depth (input 0, logits last);
 * heads of layer L share x, spread over y centred on y = 0, `row` apart (wider for few heads, up to
 * 80, so a small model is not a flat strip).
 */
export function layoutPositions(cfg, spacing = SPACING) {
  const { n_layers, n_heads, attn_only = false } = cfg;
  const P = spacing.layer;
  const R = Math.max(spacing.row, Math.min(80, 360 / Math.max(n_heads, 1)));
  const mlpShift = attn_only ? 0 : P / 2;   // the MLP column, between this layer's heads and the next
  const first = P * 0.75;                    // input → first head column
  const pos = { input: { x: 0, y: 0 } };
  let lastX = 0;
  for (let L = 0; L < n_layers; L++) {
    const x = first + L * P;
    for (let h = 0; h < n_heads; h++) pos[`a${L}.h${h}`] = { x, y: (h - (n_heads - 1) / 2) * R };
    lastX = x;
    if (!attn_only) {
      // one head: move the MLP off the heads' row so long edges along the row stay visible
      const y = n_heads === 1 ? R * 1.2 : 0;
      pos[`m${L}`] = { x: x + mlpShift, y };
      lastX = x + mlpShift;
    }
  }
  pos.logits = { x: lastX + first, y: 0 };
  return pos;
}

/** How close (px) to a node's centre a curve may pass: node half-height (16) plus a gap. */
export const CLEAR = 24;
export const NODE_HALF_WIDTH = 32;  // the widest node (input, logits): the curve clears the box, not just its centre

/**
 * How far an edge bows from the straight line (px, cytoscape's control-point-distance; negative bows
 * up for a left-to-right edge): edges that skip columns arc, more the farther they reach, so edges
 * between collinear nodes do not overlap; and an edge whose chord runs over (or just above) a node
 * it skips bows up far enough to clear it: a quadratic curve with control distance d strays
 * 2f(1−f)·|d| from its chord at fraction f. obstacles: positions of the other nodes.
 */
export function edgeBow(srcPos, dstPos, qkv = null, obstacles = [], spacing = SPACING) {
  const dx = dstPos.x - srcPos.x, dy = dstPos.y - srcPos.y;
  const span = Math.abs(dx) / spacing.layer;   // in layers
  let arc = span <= 1.01 ? 0 : -Math.min(28 * (span - 1), 160);
  const cos = Math.abs(dx) / Math.hypot(dx, dy);  // the bow's vertical share
  for (const p of obstacles) {
    if ((p.x === srcPos.x && p.y === srcPos.y) || (p.x === dstPos.x && p.y === dstPos.y)) continue;  // its own ends
    for (const side of [-NODE_HALF_WIDTH, 0, NODE_HALF_WIDTH]) {  // the box's left side, centre, right side
      const f = (p.x + side - srcPos.x) / dx;
      if (!(f > 0.01 && f < 0.99)) continue;
      const off = srcPos.y + f * dy - p.y;   // chord minus node, in y (screen y grows downwards)
      if (off > 0 || off <= -CLEAR) continue;  // the node is above the chord, or far enough below
      arc = Math.min(arc, (-CLEAR - off) / (2 * f * (1 - f) * cos));
    }
  }
  // the q, k and v edges of one source into one head would lie on top of each other: fan them out
  return arc + (QKV_FAN[qkv] ?? 0);
}

const QKV_FAN = { q: -9, k: 0, v: 9 };

/** Number of edges of a model shape (GPT-2 small: 32,491): Σ over input slots of the sources before it. */
export function edgeCount({ n_layers, n_heads, attn_only = false, parallel_attn_mlp = false }) {
  const perLayer = n_heads + (attn_only ? 0 : 1);
  let n = 0;
  for (let L = 0; L < n_layers; L++) {
    const before = 1 + L * perLayer;
    n += 3 * n_heads * before;
    if (!attn_only) n += parallel_attn_mlp ? before : before + n_heads;
  }
  return n + 1 + n_layers * perLayer;
}

/**
 * A run's graph shape: its stored cfg; else its model's layers and heads from GET /api/models (the
 * edge count telling attn_only); else guessed from its edge names (`names`, of `nTotal` edges).
 */
export function runConfig(run, nTotal, names, models = []) {
  const c = run.cfg ?? run.graph ?? null;
  if (c && c.n_layers) return c;
  const m = models.find((x) => (x.name ?? x.id) === run.model);
  const L = m?.layers ?? m?.n_layers, H = m?.heads ?? m?.n_heads;
  if (L && H) {
    // attn_only is not in the model list: the edge count tells
    const attn_only = m.attn_only ?? (edgeCount({ n_layers: L, n_heads: H, attn_only: true }) === nTotal);
    return { n_layers: L, n_heads: H, attn_only, parallel_attn_mlp: !!m.parallel_attn_mlp };
  }
  for (const attn_only of [false, true]) {  // the names tell the shape
    const guess = { ...inferConfig(names), attn_only };
    if (edgeCount(guess) === nTotal) return guess;
  }
  return inferConfig(names);
}
