// node --test: the exported picture holds exactly the drawn edges, the legend and the metadata,
// escaped, and every curve inside its frame.
import assert from "node:assert/strict";
import { test } from "node:test";

import { bounds, circuitSvg, esc } from "../../frontend/js/svg.js";

const GEOM = {
  nodes: [
    { id: "input", label: "input", kind: "input", x: 0, y: 0, w: 64, h: 32, idle: false },
    { id: "a0.h0", label: "a0.h0", kind: "head", x: 142, y: -40, w: 52, h: 26, idle: false },
    { id: "m0", label: "m0", kind: "mlp", x: 237, y: 0, w: 38, h: 30, idle: true },
    { id: "logits", label: "logits", kind: "logits", x: 380, y: 0, w: 64, h: 32, idle: false },
  ],
  edges: [
    { id: "input->a0.h0<q>", ghost: false, truth: true, color: "#0072B2", width: 3, opacity: 0.8, dash: null, path: [32, 0, 80, -30, 116, -48] },
    { id: "a0.h0->logits", ghost: false, truth: false, color: "#D55E00", width: 1.2, opacity: 0.5, dash: [7, 4], path: [168, -40, 270, -200, 348, 0] },
    { id: "input->logits", ghost: false, truth: false, color: "#0072B2", width: 2, opacity: 0.6, dash: null, path: [32, 0, null, null, 348, 0] },
    { id: "ghost:input->m0", ghost: true, truth: false, color: "#009E73", width: 1.5, opacity: 0.75, dash: [3, 3], path: [32, 0, 130, 20, 218, 0] },
  ],
};

test("one path per drawn edge (named), ghosts apart, the known ones ringed", () => {
  const svg = circuitSvg(GEOM, { meta: ["title"], legend: [{ text: "q", color: "#000" }] });
  const drawn = [...svg.matchAll(/data-edge="([^"]+)"/g)].map((m) => m[1]);
  assert.deepEqual(drawn.sort(), ["a0.h0-&gt;logits", "input-&gt;a0.h0&lt;q&gt;", "input-&gt;logits"].sort());
  assert.deepEqual([...svg.matchAll(/data-ghost="([^"]+)"/g)].map((m) => m[1]), ["input-&gt;m0"]);
  assert.equal((svg.match(/stroke="#009E73" stroke-opacity="0.45"/g) ?? []).length, 1, "one ring: the known edge");
  assert.match(svg, /M32 0Q80 -30 116 -48/);
  assert.match(svg, /M32 0L348 0/, "a straight edge is a line");
  assert.match(svg, /stroke-dasharray="7 4"/);
  assert.equal((svg.match(/data-node=/g) ?? []).length, 4);
  assert.match(svg, /<g data-node="m0" opacity="0.28">/, "idle nodes fade as on screen");
});

test("metadata and legend text are escaped and present; the frame holds every curve", () => {
  const meta = ["edgewise · circuit of toy-ioi", "method eap · dataset a<b>&c.csv"];
  const legend = [{ text: "score < 0: patching lowers it", color: "#D55E00" }, { text: "k", color: "#333", dash: [7, 4] }];
  const svg = circuitSvg(GEOM, { meta, legend });
  assert.ok(svg.includes(esc(meta[1])) && !svg.includes("a<b>&c"));
  assert.ok(svg.includes("score &lt; 0: patching lowers it"));
  const [, w, h] = /width="(\d+)" height="(\d+)"/.exec(svg).map(Number);
  const [, tx, ty] = /<g transform="translate\(([-\d.]+) ([-\d.]+)\)">/.exec(svg).map(Number);
  const b = bounds(GEOM);
  assert.ok(b.x0 + tx >= 0 && b.x1 + tx <= w, "inside horizontally");
  assert.ok(b.y0 + ty >= 40 && b.y1 + ty <= h - 30, "below the header, above the legend");
  // the highest point of 168,-40 → 270,-200 → 348,0, found by walking the curve
  let top = Infinity;
  for (let i = 0; i <= 100000; i++) { const u = i / 100000; top = Math.min(top, (1 - u) ** 2 * -40 + 2 * u * (1 - u) * -200); }
  assert.ok(Math.abs(b.y0 - top) < 1e-6, `${b.y0} vs ${top}`);
  assert.equal((svg.match(/<svg /g) ?? []).length, 1);
  assert.equal((svg.match(/<g[ >]/g) ?? []).length, (svg.match(/<\/g>/g) ?? []).length, "groups balanced");
});

test("esc makes text safe inside elements and attributes", () => {
  assert.equal(esc(`a0.h1->a2.h3<q> & "x"`), "a0.h1-&gt;a2.h3&lt;q&gt; &amp; &quot;x&quot;");
});
