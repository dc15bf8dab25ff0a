// Pure: how an edge looks (colour, width, opacity, dash), shared by the graph view, the SVG/PNG
// export and the legends, so all three always agree.

// Okabe–Ito: distinguishable with every common colour-vision deficiency.
export const COLORS = {
  pos: "#0072B2",     // blue: score > 0
  neg: "#D55E00",     // vermillion: score < 0
  a: "#0072B2",       // compare: in the open run (A) only
  b: "#E69F00",       // compare: in the other run (B) only
  both: "#1e293b",    // compare: in both
  truth: "#009E73",   // known circuit: its edges (ring), and the ones not shown (ghosts)
  ghost: "#64748b",
};

export const SIGN_LEGEND = [
  { color: COLORS.pos, text: "score > 0: patching the edge raises the metric" },
  { color: COLORS.neg, text: "score < 0: patching the edge lowers the metric" },
];

export const COMPARE_LEGEND = [
  { color: COLORS.a, key: "a", text: "A only" },
  { color: COLORS.b, key: "b", text: "B only" },
  { color: COLORS.both, key: "both", text: "both" },
];

// k dashed, v dotted, q solid; dashes only while few edges are drawn (they cost canvas 2-5x per frame)
export const DASH = { q: null, k: [7, 4], v: [1.5, 3.5] };
export const DASH_LIMIT = 600;

/**
 * The look of an edge: w = sqrt(|score| / max|score|) in 0…1 (area-like: width grows with √|score|);
 * cls: compare class ('a' | 'b' | 'both') or null to colour by sign.
 */
export function edgeLook(score, w, cls = null) {
  const color = cls ? COLORS[cls] : score < 0 ? COLORS.neg : COLORS.pos;
  return { color, width: 0.7 + 6.3 * w, opacity: 0.4 + 0.5 * w };
}

/** w of an edge: sqrt(|score| / maxAbs), 0…1. */
export function edgeWeight(score, maxAbs) {
  const m = maxAbs > 0 ? maxAbs : 1;
  return Math.min(1, Math.sqrt(Math.abs(score) / m));
}
