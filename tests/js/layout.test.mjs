// node --test: node and edge names, and where the layered layout puts each node.
import assert from "node:assert/strict";
import { test } from "node:test";

import { CLEAR, NODE_HALF_WIDTH, edgeBow, edgeCount, graphNodes, inferConfig, layoutPositions, parseEdge, parseNode, runConfig } from "../../frontend/js/layout.js";

test("parseNode and parseEdge read EAP-IG names", () => {
  assert.deepEqual(parseNode("a11.h3"), { kind: "head", layer: 11, head: 3 });
  assert.deepEqual(parseNode("m0"), { kind: "mlp", layer: 0, head: null });
  assert.equal(parseNode("input").kind, "input");
  assert.equal(parseNode("logits").kind, "logits");
  assert.equal(parseNode("a1.h"), null);
  assert.equal(parseNode("a1.h2<q>"), null);
  assert.deepEqual(parseEdge("a0.h3->a2.h1<v>"), { src: "a0.h3", dst: "a2.h1", qkv: "v" });
  assert.deepEqual(parseEdge("m11->logits"), { src: "m11", dst: "logits", qkv: null });
  assert.equal(parseEdge("nonsense"), null);
});

test("graphNodes: forward order, MLPs unless attention-only", () => {
  assert.deepEqual(graphNodes({ n_layers: 2, n_heads: 2 }), ["input", "a0.h0", "a0.h1", "m0", "a1.h0", "a1.h1", "m1", "logits"]);
  assert.deepEqual(graphNodes({ n_layers: 1, n_heads: 2, attn_only: true }), ["input", "a0.h0", "a0.h1", "logits"]);
  assert.equal(graphNodes({ n_layers: 12, n_heads: 12 }).length, 1 + 12 * 13 + 1);
});

test("edgeCount matches the graph: GPT-2 small has 32,491 edges", () => {
  assert.equal(edgeCount({ n_layers: 12, n_heads: 12 }), 32491);
  assert.equal(edgeCount({ n_layers: 4, n_heads: 1 }), 77);                   // tracr-reverse
  assert.equal(edgeCount({ n_layers: 2, n_heads: 2, attn_only: true }), 29);   // toy-induction
  assert.equal(edgeCount({ n_layers: 2, n_heads: 1 }), 23);                   // tracr-proportion
});

test("layered layout: input left, logits right, a column per layer, heads stacked, MLPs apart", () => {
  const cfg = { n_layers: 3, n_heads: 4 };
  const pos = layoutPositions(cfg);
  assert.deepEqual(Object.keys(pos).sort(), graphNodes(cfg).sort());
  const x = (n) => pos[n].x;
  for (let L = 0; L < 3; L++) {
    const heads = [0, 1, 2, 3].map((h) => pos[`a${L}.h${h}`]);
    assert.ok(heads.every((p) => p.x === heads[0].x), `layer ${L}: heads share a column`);
    const ys = heads.map((p) => p.y);
    assert.deepEqual(ys, [...ys].sort((a, b) => a - b), "heads stacked in order");
    assert.equal(new Set(ys).size, 4, "no two heads overlap");
    assert.ok(Math.abs(ys[0] + ys[3]) < 1e-9, "the stack is centred");
    assert.ok(x(`a${L}.h0`) < x(`m${L}`), "the MLP reads after its heads write");
    if (L > 0) assert.ok(x(`m${L - 1}`) < x(`a${L}.h0`));
  }
  assert.ok(x("input") < x("a0.h0") && x("m2") < x("logits"));
  for (const n of graphNodes(cfg)) {
    const same = Object.entries(pos).filter(([m, p]) => m !== n && p.x === pos[n].x && p.y === pos[n].y);
    assert.equal(same.length, 0, `${n} shares its position`);
  }
});

test("attention-only: layers one column apart; one head: the MLP leaves the heads' row", () => {
  const a = layoutPositions({ n_layers: 2, n_heads: 2, attn_only: true });
  assert.equal(a.m0, undefined);
  assert.ok(a["a0.h0"].x < a["a1.h0"].x && a["a1.h0"].x < a.logits.x);
  const t = layoutPositions({ n_layers: 4, n_heads: 1 });
  assert.notEqual(t.m0.y, t["a0.h0"].y);
  assert.equal(t.input.y, t["a3.h0"].y);
});

test("inferConfig reads the shape from names", () => {
  assert.deepEqual(inferConfig(["a3.h0->m5", "input->a0.h7<q>"]), { n_layers: 6, n_heads: 8, attn_only: false });
  assert.deepEqual(inferConfig(["a1.h1->logits"]), { n_layers: 2, n_heads: 2, attn_only: true });
});

test("edgeBow: neighbours straight, long edges arc more, q/k/v fan out", () => {
  const p = layoutPositions({ n_layers: 4, n_heads: 1 });
  assert.equal(edgeBow(p["a0.h0"], p.m0), 0);
  const one = Math.abs(edgeBow(p.input, p["a2.h0"]));
  const two = Math.abs(edgeBow(p.input, p["a3.h0"]));
  assert.ok(two > one && one > 0);
  const q = edgeBow(p.input, p["a0.h0"], "q"), k = edgeBow(p.input, p["a0.h0"], "k"), v = edgeBow(p.input, p["a0.h0"], "v");
  assert.ok(q < k && k < v);
});

/**
 * The curve cytoscape draws for an unbundled-bezier edge with one control point: a quadratic Bézier
 * whose control point sits at the chord's middle, `bow` px along the normal (−dy, dx)/|d| (checked in
 * the browser: m0→m2 with bow −48 has its control point 48 px above the row).
 */
function curve(s, t, bow, n = 200) {
  const dx = t.x - s.x, dy = t.y - s.y, len = Math.hypot(dx, dy);
  const c = { x: (s.x + t.x) / 2 - (dy / len) * bow, y: (s.y + t.y) / 2 + (dx / len) * bow };
  return Array.from({ length: n + 1 }, (_, i) => {
    const u = i / n;
    return { x: (1 - u) ** 2 * s.x + 2 * u * (1 - u) * c.x + u * u * t.x, y: (1 - u) ** 2 * s.y + 2 * u * (1 - u) * c.y + u * u * t.y };
  });
}

test("edges along a row clear every node they skip (m0→m2 does not run over m1)", () => {
  for (const cfg of [{ n_layers: 3, n_heads: 4 }, { n_layers: 4, n_heads: 1 }, { n_layers: 12, n_heads: 12 }, { n_layers: 2, n_heads: 3, attn_only: true }]) {
    const pos = layoutPositions(cfg);
    const names = graphNodes(cfg);
    const obstacles = Object.values(pos);
    let checked = 0;
    for (const a of names) for (const b of names) {
      const s = pos[a], t = pos[b];
      if (!(t.x > s.x) || Math.abs(t.y - s.y) > 1e-9) continue;
      const between = names.filter((n) => n !== a && n !== b && Math.abs(pos[n].y - s.y) < 1e-9 && pos[n].x > s.x && pos[n].x < t.x);
      if (!between.length) continue;
      for (const qkv of [null, "q", "v"]) {
        const pts = curve(s, t, edgeBow(s, t, qkv, obstacles));
        for (const n of between) {
          // over the node's box (the widest: 64 × 32), the curve stays above its top edge
          const over = pts.filter((p) => Math.abs(p.x - pos[n].x) <= NODE_HALF_WIDTH);
          const gap = Math.min(...over.map((p) => pos[n].y - 16 - p.y));
          // 8 px of air; the q/v fan moves the curve by up to half its 9 px, which may eat into that air
          assert.ok(gap >= (qkv ? 3.4 : 7.99), `${JSON.stringify(cfg)} ${a}->${b}${qkv ? `<${qkv}>` : ""} passes ${gap.toFixed(1)} px above ${n}'s box`);
        }
        checked++;
      }
    }
    assert.ok(checked > 0, `no row edge skips a node in ${JSON.stringify(cfg)}`);
  }
});

test("edgeBow without obstacles is the plain arc (obstacles only ever bow further up)", () => {
  const p = layoutPositions({ n_layers: 3, n_heads: 4 });
  const obstacles = Object.values(p);
  for (const [a, b] of [["input", "logits"], ["m0", "m2"], ["a0.h0", "a2.h3"], ["input", "a0.h1"]]) {
    assert.ok(edgeBow(p[a], p[b], null, obstacles) <= edgeBow(p[a], p[b]), `${a}->${b}`);
  }
  assert.equal(edgeBow(p["a0.h0"], p.m0, null, obstacles), 0, "neighbours stay straight");
  // an edge between neighbouring columns skips no node: its own ends are no obstacles
  for (const cfg of [{ n_layers: 2, n_heads: 2, attn_only: true }, { n_layers: 3, n_heads: 4 }]) {
    const pos = layoutPositions(cfg);
    const xs = [...new Set(Object.values(pos).map((q) => q.x))].sort((a, b) => a - b);
    for (const a of Object.keys(pos)) for (const b of Object.keys(pos)) {
      if (xs.indexOf(pos[b].x) !== xs.indexOf(pos[a].x) + 1) continue;
      assert.equal(edgeBow(pos[a], pos[b], "k", Object.values(pos)), edgeBow(pos[a], pos[b], "k"), `${a}->${b}`);
    }
  }
});

test("a run's shape: its cfg, else its model's layers and heads (attn_only from the edge count), else its edge names", () => {
  const cfg = { n_layers: 2, n_heads: 3, attn_only: false };
  assert.deepEqual(runConfig({ cfg }, 0, []), cfg);
  const models = [{ name: "m", n_layers: 2, n_heads: 2 }];
  const attnOnly = edgeCount({ n_layers: 2, n_heads: 2, attn_only: true });
  assert.equal(runConfig({ model: "m" }, attnOnly, [], models).attn_only, true);
  assert.equal(runConfig({ model: "m" }, edgeCount({ n_layers: 2, n_heads: 2 }), [], models).attn_only, false);
  const names = ["input->a0.h0<q>", "a0.h0->m0", "m0->a1.h1<v>", "a1.h1->logits"];
  const guess = runConfig({ model: "unknown" }, edgeCount({ n_layers: 2, n_heads: 2 }), names, models);
  assert.deepEqual([guess.n_layers, guess.n_heads, guess.attn_only], [2, 2, false]);
});
