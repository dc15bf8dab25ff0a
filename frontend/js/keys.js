// The graph without a mouse: Tab focuses it, arrows move a cursor between nodes (nav.js), Enter
// opens the node's panel, Escape closes it; and the "Find node" box (a node or an edge by name).
import { app } from "./app.js";
import { closeNode, graphView, openNode } from "./explorer.js";
import { formatScore } from "./format.js";
import { findTarget, navigate } from "./nav.js";
import { describe, toast } from "./panels.js";

const $ = (id) => document.getElementById(id);

function announce(name) {
  const cy = graphView().cy;
  const n = cy.getElementById(name);
  const edges = n.connectedEdges().not(".ghost");
  const into = edges.filter((e) => e.target().id() === name).length;
  $("graph-live").textContent = `${name}: ${describe(name)}; ${edges.length} edges shown, ${into} in, ${edges.length - into} out`;
}

/** Put the keyboard cursor on `name`, keep it in sight, and say where it is. */
function moveCursor(name) {
  const view = graphView();
  app.cursor = name;
  view.setCursor(name);
  const n = view.cy.getElementById(name);
  const p = n.renderedPosition(), w = view.cy.width(), hgt = view.cy.height();
  if (p.x < 20 || p.y < 20 || p.x > w - 20 || p.y > hgt - 20) view.cy.center(n);
  announce(name);
}

function wireGraphKeys() {
  const el = $("graph");
  el.addEventListener("focus", () => {
    if (!app.run) return;
    moveCursor(app.cursor ?? app.node ?? "input");
  });
  el.addEventListener("blur", () => graphView().setCursor(null));
  el.addEventListener("keydown", (ev) => {
    if (!app.run) return;
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      if (app.cursor) openNode(app.cursor);
      return;
    }
    if (ev.key === "Escape") { closeNode(); return; }
    const next = navigate(graphView().pos, app.cursor, ev.key);
    if (!next) return;
    ev.preventDefault();
    moveCursor(next);
  });
}

/** Find a node (centre it, open its panel) or an edge (centre it, highlight it; say where it ranks). */
export function find(query) {
  const view = graphView();
  if (!app.run || !view) return null;
  const nodes = view.cy.nodes().map((n) => n.id());
  const target = findTarget(query, nodes, app.shown.map((e) => e.name).concat(app.loaded.map((e) => e.name)));
  if (!target) {
    toast(`No node or edge named “${query}”`, "error");
    return null;
  }
  if (target.kind === "node") {
    openNode(target.name);
    view.centerOn(target.name);
    app.cursor = target.name;
    return target;
  }
  const rank = app.loaded.findIndex((e) => e.name === target.name) + 1;
  const score = app.loaded[rank - 1]?.score;
  if (view.centerOn(target.name)) {
    view.highlightEdge(target.name);
    toast(`${target.name}: score ${formatScore(score)}, rank ${rank} by |score|`);
  } else {
    toast(`${target.name} is not shown at this threshold (rank ${rank} by |score|, score ${formatScore(score)})`);
  }
  return target;
}

function wireFind() {
  const box = $("find");
  box.addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter") return;
    ev.preventDefault();
    if (box.value.trim()) find(box.value);
  });
  // picking a suggestion from the list (not typing) replaces the text: go there at once
  box.addEventListener("input", (ev) => {
    const v = box.value.trim();
    if (ev.inputType === "insertReplacementText" && v) find(v);
  });
}

export function wireKeys() {
  wireGraphKeys();
  wireFind();
}
