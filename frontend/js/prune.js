// Pure: the "connected only" selection rule, EAP-IG's prune (Graph.prune in hannamw/EAP-IG).
//
// EAP-IG repeatedly drops every node with no kept incoming edge (input excepted) or no kept outgoing
// edge (logits excepted), then every edge that lost an end, until nothing changes. In a DAG the fixed
// point keeps exactly the edges that lie on some input → logits path of kept edges: an edge u→v stays
// iff u is reached from input and logits is reached from v. Two sweeps in forward order compute that
// without iterating: a head counts as reached when any of its q/k/v inputs is.
import { parseEdge, parseNode } from "./layout.js";

/** Forward position of a node: input, then per layer its heads, then its MLP, then logits. */
export function nodeRank(name) {
  const n = parseNode(name);
  if (!n) throw new Error(`not a node name: ${name}`);
  if (n.kind === "input") return -1;
  if (n.kind === "logits") return 1e9;  // finite: rank differences must not be NaN
  return 2 * n.layer + (n.kind === "mlp" ? 1 : 0);
}

const ends = (e) => (e.src && e.dst ? e : { ...e, ...parseEdge(e.name) });

/** The edges of `edges` on an input → logits path of `edges`, in their given order. */
export function connectedEdges(edges) {
  const parsed = edges.map(ends);
  // forward: nodes reached from input, visiting edges by their destination's position
  const byDst = parsed.map((e, i) => i).sort((a, b) => nodeRank(parsed[a].dst) - nodeRank(parsed[b].dst));
  const reached = new Set(["input"]);
  for (const i of byDst) if (reached.has(parsed[i].src)) reached.add(parsed[i].dst);
  // backward: nodes that reach logits, visiting edges from the last source back
  const bySrc = parsed.map((e, i) => i).sort((a, b) => nodeRank(parsed[b].src) - nodeRank(parsed[a].src));
  const useful = new Set(["logits"]);
  for (const i of bySrc) if (useful.has(parsed[i].dst)) useful.add(parsed[i].src);
  return edges.filter((e, i) => reached.has(parsed[i].src) && useful.has(parsed[i].dst));
}
