// Pure: moving between nodes with the keyboard, and finding a node or edge by name.

/**
 * The node one key press away from `current` in the layered layout (pos: {name: {x, y}}).
 * ArrowLeft/ArrowRight: the next column (x) that way, the node nearest in y; ArrowUp/ArrowDown:
 * the neighbour above/below in the same column; Home: input; End: logits. Stays put at an edge of
 * the layout; null current starts at input. Returns a node name, or null for any other key.
 */
export function navigate(pos, current, key) {
  const names = Object.keys(pos);
  if (!names.length) return null;
  if (key === "Home") return "input" in pos ? "input" : names[0];
  if (key === "End") return "logits" in pos ? "logits" : names[names.length - 1];
  if (!["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].includes(key)) return null;
  if (!current || !pos[current]) return "input" in pos ? "input" : names[0];
  const here = pos[current];
  const same = (a, b) => Math.abs(a - b) < 1e-6;
  if (key === "ArrowUp" || key === "ArrowDown") {
    const col = names.filter((n) => same(pos[n].x, here.x)).sort((a, b) => pos[a].y - pos[b].y);
    const i = col.indexOf(current) + (key === "ArrowDown" ? 1 : -1);
    return col[Math.min(Math.max(i, 0), col.length - 1)];
  }
  const dir = key === "ArrowRight" ? 1 : -1;
  const xs = [...new Set(names.map((n) => pos[n].x))].filter((x) => dir * (x - here.x) > 1e-6);
  if (!xs.length) return current;
  const x = dir > 0 ? Math.min(...xs) : Math.max(...xs);
  return names.filter((n) => same(pos[n].x, x))
    .reduce((best, n) => (Math.abs(pos[n].y - here.y) < Math.abs(pos[best].y - here.y) ? n : best));
}

/**
 * What a "Find node" query names: {kind: 'node'|'edge', name} or null. Exact names first
 * (case and spaces ignored), then the first edge starting with the query (an edge into a head
 * without <q|k|v>), then the first node starting with it ("a1" → a1.h0). nodes, edges: names in
 * the order to prefer.
 */
export function findTarget(query, nodes, edges = []) {
  const q = String(query ?? "").toLowerCase().replace(/\s+/g, "");
  if (!q) return null;
  const norm = (s) => s.toLowerCase();
  const node = nodes.find((n) => norm(n) === q);
  if (node) return { kind: "node", name: node };
  const edge = edges.find((e) => norm(e) === q);
  if (edge) return { kind: "edge", name: edge };
  if (q.includes("->")) {
    const e = edges.find((x) => norm(x).startsWith(q));
    return e ? { kind: "edge", name: e } : null;
  }
  const n = nodes.find((x) => norm(x).startsWith(q));
  return n ? { kind: "node", name: n } : null;
}
