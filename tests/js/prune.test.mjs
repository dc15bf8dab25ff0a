// node --test: the "connected only" rule against brute force (every input → logits path walked)
// and against EAP-IG's own procedure (drop nodes without kept in- or out-edges until nothing changes).
import assert from "node:assert/strict";
import { test } from "node:test";

import { edgeCount, graphNodes, parseEdge } from "../../frontend/js/layout.js";
import { connectedEdges, nodeRank } from "../../frontend/js/prune.js";

/** Every edge of a model shape, as the server names them (head inputs per q/k/v). */
function allEdges({ n_layers, n_heads, attn_only = false }) {
  const out = [];
  const before = ["input"];
  for (let L = 0; L < n_layers; L++) {
    for (let h = 0; h < n_heads; h++) for (const q of "qkv") for (const s of before) out.push(`${s}->a${L}.h${h}<${q}>`);
    const heads = Array.from({ length: n_heads }, (_, h) => `a${L}.h${h}`);
    if (!attn_only) for (const s of [...before, ...heads]) out.push(`${s}->m${L}`);
    before.push(...heads);
    if (!attn_only) before.push(`m${L}`);
  }
  for (const s of before) out.push(`${s}->logits`);
  return out;
}

/** Brute force: walk every path from input along kept edges; an edge counts when a path through it ends at logits. */
function onSomePath(names) {
  const out = new Map();  // node → its kept out-edges
  for (const n of names) {
    const { src } = parseEdge(n);
    if (!out.has(src)) out.set(src, []);
    out.get(src).push(n);
  }
  const keep = new Set();
  const walk = (node, path) => {
    if (node === "logits") { for (const e of path) keep.add(e); return; }
    for (const e of out.get(node) ?? []) walk(parseEdge(e).dst, [...path, e]);
  };
  walk("input", []);
  return keep;
}

/** EAP-IG's Graph.prune, transcribed as a fixed point over node sets (no shortcuts). */
function eapIgPrune(names) {
  let edges = new Set(names);
  for (;;) {
    const hasOut = new Set(), hasIn = new Set(["input"]);
    for (const n of edges) { const { src, dst } = parseEdge(n); hasOut.add(src); hasIn.add(dst); }
    const alive = (x) => x === "logits" || (hasOut.has(x) && hasIn.has(x));
    const next = new Set([...edges].filter((n) => { const { src, dst } = parseEdge(n); return alive(src) && alive(dst); }));
    if (next.size === edges.size) return next;
    edges = next;
  }
}

function rng(seed) {  // mulberry32: a reproducible random stream
  return () => {
    seed |= 0; seed = (seed + 0x6D2B79F5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test("the edge lists of the test match the page's edge count (the shapes are right)", () => {
  for (const cfg of [{ n_layers: 2, n_heads: 2 }, { n_layers: 3, n_heads: 1, attn_only: true }, { n_layers: 4, n_heads: 3 }]) {
    assert.equal(allEdges(cfg).length, edgeCount(cfg));
  }
});

test("connectedEdges keeps exactly the edges on an input → logits path (random subsets vs brute force and EAP-IG)", () => {
  const rand = rng(7);
  for (const cfg of [{ n_layers: 2, n_heads: 2 }, { n_layers: 3, n_heads: 2, attn_only: true }, { n_layers: 3, n_heads: 3 }]) {
    const all = allEdges(cfg);
    for (const p of [0.03, 0.08, 0.15, 0.3]) {
      for (let rep = 0; rep < 25; rep++) {
        const picked = all.filter(() => rand() < p).map((name) => ({ name, score: rand() - 0.5 }));
        const got = connectedEdges(picked).map((e) => e.name);
        const names = picked.map((e) => e.name);
        assert.deepEqual(new Set(got), onSomePath(names), `brute force, ${JSON.stringify(cfg)} p=${p}`);
        assert.deepEqual(new Set(got), eapIgPrune(names), `EAP-IG prune, ${JSON.stringify(cfg)} p=${p}`);
        assert.deepEqual(got, names.filter((n) => got.includes(n)), "the input order is kept");
      }
    }
  }
});

test("a head is reached through any of its q/k/v inputs; dangling edges go", () => {
  const E = (name) => ({ name, score: 1 });
  const kept = connectedEdges([E("input->a0.h0<k>"), E("a0.h0->logits"), E("input->a0.h1<q>"), E("a0.h0->m0"), E("m1->logits")]);
  assert.deepEqual(kept.map((e) => e.name), ["input->a0.h0<k>", "a0.h0->logits"]);
  assert.deepEqual(connectedEdges([E("input->logits")]).map((e) => e.name), ["input->logits"]);
  assert.deepEqual(connectedEdges([]), []);
});

test("nodeRank orders nodes as they write the residual stream", () => {
  const order = graphNodes({ n_layers: 3, n_heads: 2 });
  for (let i = 1; i < order.length; i++) assert.ok(nodeRank(order[i - 1]) <= nodeRank(order[i]), order[i]);
  assert.ok(nodeRank("a0.h1") < nodeRank("m0") && nodeRank("m0") < nodeRank("a1.h0"));
  assert.throws(() => nodeRank("x7"));
});
