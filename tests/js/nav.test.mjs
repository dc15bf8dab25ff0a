// node --test: moving between nodes with the keyboard, and "Find node".
import assert from "node:assert/strict";
import { test } from "node:test";

import { graphNodes, layoutPositions } from "../../frontend/js/layout.js";
import { findTarget, navigate } from "../../frontend/js/nav.js";

const CFG = { n_layers: 2, n_heads: 3 };
const POS = layoutPositions(CFG);

test("arrows walk the layout: right across columns, down within one, ends stay put", () => {
  assert.equal(navigate(POS, null, "ArrowRight"), "input", "no cursor yet: start at input");
  assert.equal(navigate(POS, "input", "ArrowRight"), "a0.h1", "the head level with input");
  assert.equal(navigate(POS, "a0.h1", "ArrowDown"), "a0.h2");
  assert.equal(navigate(POS, "a0.h2", "ArrowDown"), "a0.h2", "bottom of the column");
  assert.equal(navigate(POS, "a0.h0", "ArrowUp"), "a0.h0", "top of the column");
  assert.equal(navigate(POS, "a0.h2", "ArrowRight"), "m0");
  assert.equal(navigate(POS, "m0", "ArrowLeft"), "a0.h1");
  assert.equal(navigate(POS, "logits", "ArrowRight"), "logits");
  assert.equal(navigate(POS, "a1.h0", "Home"), "input");
  assert.equal(navigate(POS, "a1.h0", "End"), "logits");
  assert.equal(navigate(POS, "a1.h0", "a"), null, "other keys are not ours");
});

test("every node is reachable from input with the arrows", () => {
  const seen = new Set(["input"]);
  const todo = ["input"];
  while (todo.length) {
    const n = todo.pop();
    for (const k of ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"]) {
      const m = navigate(POS, n, k);
      if (!seen.has(m)) { seen.add(m); todo.push(m); }
    }
  }
  assert.deepEqual([...seen].sort(), graphNodes(CFG).sort());
});

test("findTarget: exact names, case and spaces ignored, then prefixes", () => {
  const nodes = graphNodes(CFG);
  const edges = ["input->a0.h1<q>", "input->a0.h1<k>", "a0.h1->logits"];
  assert.deepEqual(findTarget("m1", nodes, edges), { kind: "node", name: "m1" });
  assert.deepEqual(findTarget(" A1.H2 ", nodes, edges), { kind: "node", name: "a1.h2" });
  assert.deepEqual(findTarget("input -> a0.h1<k>", nodes, edges), { kind: "edge", name: "input->a0.h1<k>" });
  assert.deepEqual(findTarget("input->a0.h1", nodes, edges), { kind: "edge", name: "input->a0.h1<q>" }, "an edge into a head without its slot");
  assert.deepEqual(findTarget("a1", nodes, edges), { kind: "node", name: "a1.h0" });
  assert.equal(findTarget("a9.h9", nodes, edges), null);
  assert.equal(findTarget("m0->m1", nodes, edges), null);
  assert.equal(findTarget("", nodes, edges), null);
});
