// The cytoscape view of a run's graph. Nodes (every node of the model) are placed once with the
// preset layered layout; edges are diffed in and out inside cy.batch, never rebuilt, and never more
// than select.MAX_SHOWN at a time.
import { edgeBow, graphNodes, layoutPositions, parseEdge, parseNode } from "./layout.js";
import { activeNodes, diffShown } from "./select.js";

// Okabe–Ito blue / vermillion: distinguishable with every common colour-vision deficiency.
export const COLORS = { pos: "#0072B2", neg: "#D55E00" };
// q/k/v: where the edge lands on the head (q top, k middle, v bottom of its left side), and, while at
// most DASH_LIMIT edges are drawn, the line style (dashes cost canvas 2-5x per frame: measured with
// bench/bench_slider.py; above the limit the landing point alone tells them apart)
const QKV_END = { q: "-50% -32%", k: "-50% 0%", v: "-50% 32%" };
const QKV_DASH = { k: { "line-style": "dashed", "line-dash-pattern": [7, 4] }, v: { "line-style": "dotted", "line-dash-pattern": [1.5, 3.5] } };
export const DASH_LIMIT = 600;

const STYLE = [
  { selector: "node", style: {
    "background-color": "#ffffff", "border-width": 1.5, "border-color": "#94a3b8", shape: "round-rectangle",
    width: 52, height: 26, label: "data(label)", "font-size": 10, "font-family": "Inter, system-ui, sans-serif",
    color: "#1e293b", "text-valign": "center", "text-halign": "center", "transition-property": "opacity",
    "transition-duration": "120ms", "min-zoomed-font-size": 6 } },
  { selector: "node[kind = 'mlp']", style: { "background-color": "#f1f5f9", "border-color": "#64748b", shape: "rectangle", width: 38, height: 30 } },
  { selector: "node[kind = 'input'], node[kind = 'logits']", style: {
    "background-color": "#1e293b", "border-color": "#1e293b", color: "#ffffff", width: 64, height: 32, "font-weight": 600 } },
  { selector: "node.idle", style: { opacity: 0.28 } },
  { selector: "node.focus", style: { "border-width": 3, "border-color": "#f59e0b", opacity: 1 } },
  { selector: "node:active", style: { "overlay-opacity": 0.08 } },
  { selector: "edge", style: {
    "curve-style": "unbundled-bezier", "control-point-distances": "data(bow)", "control-point-weights": 0.5,
    width: "mapData(w, 0, 1, 0.7, 7)", opacity: "mapData(w, 0, 1, 0.4, 0.9)", "line-color": COLORS.pos,
    "source-endpoint": "50% 0%" } },
  { selector: "edge[score < 0]", style: { "line-color": COLORS.neg } },
  ...Object.entries(QKV_END).map(([q, end]) => ({ selector: `edge[qkv = '${q}']`, style: { "target-endpoint": end } })),
  ...Object.entries(QKV_DASH).map(([q, style]) => ({ selector: `edge.dash[qkv = '${q}']`, style })),
  { selector: "edge.dim", style: { opacity: 0.12 } },
  { selector: "edge.hover", style: { opacity: 1, "z-index": 10, "underlay-color": "#f59e0b", "underlay-opacity": 0.35, "underlay-padding": 3 } },
];

function nodeLabel(name) {
  const n = parseNode(name);
  if (!n) return name;
  if (n.kind === "head") return `a${n.layer}.h${n.head}`;
  return name;
}

export class GraphView {
  /** container: a DOM element; handlers: {onNodeClick(name), onBackgroundClick(), onHover(info|null)} */
  constructor(cytoscape, container, handlers = {}) {
    this.handlers = handlers;
    this.shown = new Set();
    this.cfg = null;
    this.dashes = true;
    this.cy = cytoscape({
      container, style: STYLE, elements: [], layout: { name: "preset" },
      minZoom: 0.05, maxZoom: 4, boxSelectionEnabled: false, autoungrabify: true,
      textureOnViewport: true, motionBlur: false, pixelRatio: "auto",
    });
    const cy = this.cy;
    cy.on("tap", "node", (ev) => { handlers.onHover?.(null); handlers.onNodeClick?.(ev.target.id()); });
    cy.on("tap", (ev) => { if (ev.target === cy) handlers.onBackgroundClick?.(); });
    cy.on("mouseover", "edge", (ev) => {
      ev.target.addClass("hover");
      handlers.onHover?.({ kind: "edge", name: ev.target.id(), score: ev.target.data("score"), pos: ev.renderedPosition });
    });
    cy.on("mouseout", "edge", (ev) => { ev.target.removeClass("hover"); handlers.onHover?.(null); });
    cy.on("mouseover", "node", (ev) => {
      container.style.cursor = "pointer";
      handlers.onHover?.({ kind: "node", name: ev.target.id(), degree: ev.target.degree(), pos: ev.renderedPosition });
    });
    cy.on("mouseout", "node", () => { container.style.cursor = ""; handlers.onHover?.(null); });
  }

  /** Place every node of the model shape (a new run); removes all edges. */
  setModel(cfg) {
    const key = `${cfg.n_layers}/${cfg.n_heads}/${!!cfg.attn_only}`;
    this.shown.clear();
    if (this.cfgKey === key) {
      this.cy.batch(() => this.cy.edges().remove());
      return;
    }
    this.cfgKey = key;
    this.cfg = cfg;
    this.pos = layoutPositions(cfg);
    const nodes = graphNodes(cfg).map((name) => ({
      group: "nodes", data: { id: name, label: nodeLabel(name), kind: parseNode(name).kind }, position: { ...this.pos[name] },
    }));
    this.cy.batch(() => {
      this.cy.elements().remove();
      this.cy.add(nodes);
    });
    this.fit();
  }

  fit() {
    const cy = this.cy;
    cy.resize();
    cy.fit(undefined, 28);
    if (cy.zoom() > 1.25) {  // a small model would otherwise fill the screen with giant boxes
      cy.zoom(1.25);
      cy.center();
    }
  }

  /**
   * Draw exactly `edges` ({name, src, dst, qkv, score}); maxAbs scales widths. Returns {added, removed}.
   * Nodes with no drawn edge fade.
   */
  setEdges(edges, maxAbs) {
    const cy = this.cy;
    const { add, remove } = diffShown(this.shown, edges);
    const scale = maxAbs > 0 ? maxAbs : 1;
    const dashes = edges.length <= DASH_LIMIT;
    cy.batch(() => {
      for (const name of remove) {
        cy.getElementById(name).remove();
        this.shown.delete(name);
      }
      const els = [];
      for (const e of add) {
        const p = e.src && e.dst ? e : { ...e, ...parseEdge(e.name) };
        const sp = this.pos[p.src], dp = this.pos[p.dst];
        if (!sp || !dp) continue;  // an edge of another shape: never draw a dangling one
        els.push({ group: "edges", classes: dashes ? "dash" : "", data: {
          id: e.name, source: p.src, target: p.dst, qkv: p.qkv ?? "", score: e.score,
          w: Math.sqrt(Math.abs(e.score) / scale), bow: edgeBow(sp, dp, p.qkv) } });
        this.shown.add(e.name);
      }
      if (dashes !== this.dashes) cy.edges().toggleClass("dash", dashes);
      this.dashes = dashes;
      if (els.length) cy.add(els);
      const active = activeNodes(edges.map((e) => (e.src && e.dst ? e : parseEdge(e.name))));
      cy.nodes().forEach((n) => {
        const idle = !active.has(n.id());
        if (n.hasClass("idle") !== idle) n.toggleClass("idle", idle);
      });
    });
    return { added: add.length, removed: remove.length };
  }

  /** Emphasise one node and its drawn edges (null clears). */
  focus(name) {
    const cy = this.cy;
    cy.batch(() => {
      cy.nodes(".focus").removeClass("focus");
      cy.edges(".dim").removeClass("dim");
      if (!name) return;
      const node = cy.getElementById(name);
      if (node.empty()) return;
      node.addClass("focus");
      cy.edges().difference(node.connectedEdges()).addClass("dim");
    });
  }

  /** The drawn edges as {name, score} (what the tests and the export read). */
  drawn() {
    return this.cy.edges().map((e) => ({ name: e.id(), score: e.data("score") }));
  }

  png() {
    return this.cy.png({ output: "blob", bg: "#ffffff", full: true, scale: 2, maxWidth: 6000 });
  }
}
