// The cytoscape view of a run's graph. Nodes (every node of the model) are placed once with the
// preset layered layout; edges are diffed in and out inside cy.batch, never rebuilt, and never more
// than select.MAX_SHOWN at a time. How an edge looks comes from look.js (the export uses the same).
import { edgeBow, graphNodes, layoutPositions, parseEdge, parseNode } from "./layout.js";
import { COLORS, DASH, DASH_LIMIT, edgeLook } from "./look.js";
import { activeNodes, diffShown } from "./select.js";

export { COLORS };
// q/k/v: where the edge lands on the head (q top, k middle, v bottom of its left side), and, while at
// most DASH_LIMIT edges are drawn, the line style; above the limit the landing point alone tells them apart
const QKV_END = { q: "-50% -32%", k: "-50% 0%", v: "-50% 32%" };
export const GHOST = "ghost:";  // id prefix of a known-circuit edge that is not shown

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
  { selector: "node.kbd", style: { "overlay-color": "#0072B2", "overlay-opacity": 0.18, "overlay-padding": 7, opacity: 1 } },
  { selector: "node:active", style: { "overlay-opacity": 0.08 } },
  { selector: "edge", style: {
    "curve-style": "unbundled-bezier", "control-point-distances": "data(bow)", "control-point-weights": 0.5,
    width: "data(width)", opacity: "data(opacity)", "line-color": "data(color)", "source-endpoint": "50% 0%" } },
  ...Object.entries(QKV_END).map(([q, end]) => ({ selector: `edge[qkv = '${q}']`, style: { "target-endpoint": end } })),
  ...["k", "v"].map((q) => ({ selector: `edge.dash[qkv = '${q}']`, style: {
    "line-style": q === "k" ? "dashed" : "dotted", "line-dash-pattern": DASH[q] } })),
  { selector: "edge.truth", style: { "underlay-color": COLORS.truth, "underlay-opacity": 0.45, "underlay-padding": 3 } },
  { selector: "edge.ghost", style: { width: 1.5, opacity: 0.75, "line-color": COLORS.truth, "line-style": "dashed", "line-dash-pattern": [3, 3] } },
  { selector: "edge.dim", style: { opacity: 0.08 } },
  { selector: "node.dim", style: { opacity: 0.35 } },
  { selector: "edge.hl", style: { opacity: 1, "z-index": 9 } },
  { selector: "edge.hover", style: { opacity: 1, "z-index": 10, "underlay-color": "#f59e0b", "underlay-opacity": 0.5, "underlay-padding": 4 } },
];

function nodeLabel(name) {
  const n = parseNode(name);
  return n?.kind === "head" ? `a${n.layer}.h${n.head}` : name;
}

const ends = (e) => (e.src && e.dst ? e : { ...e, ...parseEdge(e.name) });

export class GraphView {
  /** handlers: {onNodeClick(name), onBackgroundClick(), onHover(info|null), onNodeHover(name|null)} */
  constructor(cytoscape, container, handlers = {}) {
    this.handlers = handlers;
    this.shown = new Map();   // name → look key of what is drawn
    this.ghosts = new Set();
    this.cfg = null;
    this.dashes = true;
    this.focused = null;
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
      const ghost = ev.target.hasClass("ghost");
      handlers.onHover?.({ kind: "edge", ghost, name: ghost ? ev.target.id().slice(GHOST.length) : ev.target.id(),
        score: ev.target.data("score"), pos: ev.renderedPosition });
    });
    cy.on("mouseout", "edge", (ev) => { ev.target.removeClass("hover"); handlers.onHover?.(null); });
    cy.on("mouseover", "node", (ev) => {
      container.style.cursor = "pointer";
      const n = ev.target;
      handlers.onHover?.({ kind: "node", name: n.id(), degree: n.connectedEdges().not(".ghost").length, pos: ev.renderedPosition });
      this.hoverNode(n.id());
      handlers.onNodeHover?.(n.id());
    });
    const leave = () => {
      container.style.cursor = "";
      handlers.onHover?.(null);
      if (this.hovered) this.hoverNode(null);
      handlers.onNodeHover?.(null);
    };
    cy.on("mouseout", "node", leave);
    // leaving the canvas fast can skip cytoscape's mouseout: never leave the highlight behind
    container.addEventListener("mouseleave", () => {
      leave();
      cy.edges(".hover").removeClass("hover");
    });
  }

  /** Place every node of the model shape (a new run); removes all edges. */
  setModel(cfg) {
    const key = `${cfg.n_layers}/${cfg.n_heads}/${!!cfg.attn_only}`;
    this.shown.clear();
    this.ghosts.clear();
    this.focused = null;
    if (this.cfgKey === key) {
      this.cy.batch(() => { this.cy.edges().remove(); this.cy.nodes().removeClass("idle focus kbd dim"); });
      return;
    }
    this.cfgKey = key;
    this.cfg = cfg;
    this.pos = layoutPositions(cfg);
    this.obstacles = Object.values(this.pos);
    const nodes = graphNodes(cfg).map((name) => ({
      group: "nodes", data: { id: name, label: nodeLabel(name), kind: parseNode(name).kind }, position: { ...this.pos[name] },
    }));
    this.cy.batch(() => {
      this.cy.elements().remove();
      this.cy.add(nodes);
    });
    this.fit();
  }

  /** Remove every edge and fade every node (no run open). */
  clear() {
    this.shown.clear();
    this.ghosts.clear();
    this.cy.batch(() => { this.cy.edges().remove(); this.cy.nodes().removeClass("focus kbd dim"); });
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

  _edgeData(e, id = e.name) {
    const p = ends(e);
    const sp = this.pos[p.src], dp = this.pos[p.dst];
    if (!sp || !dp) return null;  // an edge of another shape: never draw a dangling one
    const look = edgeLook(e.score, e.w ?? 1, e.cls ?? null);
    return { id, source: p.src, target: p.dst, qkv: p.qkv ?? "", score: e.score, cls: e.cls ?? "",
      ...look, bow: edgeBow(sp, dp, p.qkv, this.obstacles) };
  }

  /**
   * Draw exactly `edges` ({name, src, dst, qkv, score, w, cls, truth}): w in 0…1 sets width and
   * opacity, cls ('a' | 'b' | 'both' | null) the compare colour, truth the known-circuit ring.
   * Nodes with no drawn edge fade. Returns {added, removed}.
   */
  setEdges(edges) {
    const cy = this.cy;
    const { add, remove } = diffShown(new Set(this.shown.keys()), edges);
    const dashes = edges.length <= DASH_LIMIT;
    const lookKey = (e) => `${e.score}|${e.w}|${e.cls ?? ""}|${e.truth ? 1 : 0}`;
    cy.batch(() => {
      for (const name of remove) {
        cy.getElementById(name).remove();
        this.shown.delete(name);
      }
      for (const e of edges) {  // kept edges whose look changed (compare, overlay, a new scale)
        const key = this.shown.get(e.name);
        if (key === undefined || key === lookKey(e)) continue;
        const el = cy.getElementById(e.name);
        const d = this._edgeData(e);
        el.data({ color: d.color, width: d.width, opacity: d.opacity, cls: d.cls });
        el.toggleClass("truth", !!e.truth);
        this.shown.set(e.name, lookKey(e));
      }
      const els = [];
      for (const e of add) {
        const data = this._edgeData(e);
        if (!data) continue;
        els.push({ group: "edges", classes: [dashes ? "dash" : "", e.truth ? "truth" : ""].join(" ").trim(), data });
        this.shown.set(e.name, lookKey(e));
      }
      if (dashes !== this.dashes) cy.edges().not(".ghost").toggleClass("dash", dashes);
      this.dashes = dashes;
      if (els.length) cy.add(els);
      const active = activeNodes(edges.map(ends));
      cy.nodes().forEach((n) => {
        const idle = !active.has(n.id());
        if (n.hasClass("idle") !== idle) n.toggleClass("idle", idle);
      });
    });
    this._restyle();
    return { added: add.length, removed: remove.length };
  }

  /** Known-circuit edges that are not shown, drawn thin and dashed ({name, src, dst, qkv, score}). */
  setGhosts(edges) {
    const cy = this.cy;
    const next = new Set(edges.map((e) => e.name));
    cy.batch(() => {
      for (const name of this.ghosts) if (!next.has(name)) cy.getElementById(GHOST + name).remove();
      const els = [];
      for (const e of edges) {
        if (this.ghosts.has(e.name)) continue;
        const data = this._edgeData({ ...e, w: 0 }, GHOST + e.name);
        if (data) els.push({ group: "edges", classes: "ghost", data });
      }
      if (els.length) cy.add(els);
    });
    this.ghosts = next;
  }

  /** Emphasise one node and its drawn edges (null clears): the node whose panel is open. */
  focus(name) {
    this.focused = name && !this.cy.getElementById(name).empty() ? name : null;
    this.cy.batch(() => {
      this.cy.nodes(".focus").removeClass("focus");
      if (this.focused) this.cy.getElementById(this.focused).addClass("focus");
    });
    this._restyle();
  }

  /** While the pointer is on a node: its edges highlighted, the rest dimmed (null: back to focus). */
  hoverNode(name) {
    this.hovered = name;
    this._restyle();
  }

  _restyle() {
    const cy = this.cy;
    const name = this.hovered ?? this.focused;
    cy.batch(() => {
      cy.elements(".dim").removeClass("dim");
      cy.edges(".hl").removeClass("hl");
      const node = name ? cy.getElementById(name) : null;
      if (!node || node.empty()) return;
      const mine = node.connectedEdges();
      mine.addClass("hl");
      cy.edges().difference(mine).addClass("dim");
      if (this.hovered) cy.nodes().difference(mine.connectedNodes()).addClass("dim");
    });
  }

  /** One edge highlighted (a row of the node panel hovered); null clears. */
  highlightEdge(name) {
    this.cy.edges(".hover").removeClass("hover");
    if (name) this.cy.getElementById(name).addClass("hover");
  }

  /** The keyboard cursor (a ring around one node); null removes it. */
  setCursor(name) {
    this.cy.nodes(".kbd").removeClass("kbd");
    if (name) this.cy.getElementById(name).addClass("kbd");
  }

  /** Pan so the node or edge `id` sits in the middle of the visible graph (zoomed in to read it). */
  centerOn(id) {
    const el = this.cy.getElementById(id);
    if (el.empty()) return false;
    const cy = this.cy;
    if (cy.zoom() < 0.8) cy.zoom(0.8);
    cy.center(el);
    return true;
  }

  /** The drawn edges as {name, score} (what the tests and the export read); ghosts excluded. */
  drawn() {
    return this.cy.edges().not(".ghost").map((e) => ({ name: e.id(), score: e.data("score") }));
  }

  /**
   * What is on screen, without hover or selection state, in model coordinates: nodes
   * {id, label, kind, x, y, w, h, idle} and edges {id, ghost, truth, color, width, opacity, dash,
   * path: [sx, sy, cx, cy, tx, ty] (quadratic; cx = cy = null when straight)}.
   */
  geometry() {
    const nodes = this.cy.nodes().map((n) => ({ id: n.id(), label: n.data("label"), kind: n.data("kind"),
      x: n.position("x"), y: n.position("y"), w: n.width(), h: n.height(), idle: n.hasClass("idle") }));
    const edges = this.cy.edges().map((e) => {
      const s = e.sourceEndpoint(), t = e.targetEndpoint(), c = e.controlPoints?.()?.[0];
      const ghost = e.hasClass("ghost");
      return { id: e.id(), ghost, truth: e.hasClass("truth"), color: ghost ? COLORS.truth : e.data("color"),
        width: ghost ? 1.5 : e.data("width"), opacity: ghost ? 0.75 : e.data("opacity"),
        dash: ghost ? [3, 3] : this.dashes ? DASH[e.data("qkv")] ?? null : null,
        path: [s.x, s.y, c ? c.x : null, c ? c.y : null, t.x, t.y] };
    });
    return { nodes, edges };
  }
}
