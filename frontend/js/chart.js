// The plotly chart: normalized faithfulness vs number of edges kept (log x), with the slider's
// position as a vertical line and the exact value of the shown circuit as a point.
import { COLORS } from "./graph.js";

const FONT = { family: "Inter, system-ui, sans-serif", size: 11, color: "#334155" };

/** Log-axis ticks 1, 2, 5, 10, 20, 50, … up to the largest k (plotly's own minor labels collide). */
export function logTicks(maxK) {
  const ticks = [];
  for (let d = 1; d <= Math.max(maxK, 1); d *= 10) for (const m of [1, 2, 5]) if (m * d <= maxK) ticks.push(m * d);
  return ticks;
}

function layout(k, note, maxK = 0) {
  const empty = maxK === 0;
  return {
    margin: { l: 52, r: 14, t: 10, b: 40 },
    font: FONT,
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "#ffffff",
    showlegend: false,
    xaxis: { type: "log", title: { text: "edges kept" }, gridcolor: "#e2e8f0", zeroline: false, visible: !empty,
      tickmode: "array", tickvals: logTicks(maxK), ticktext: logTicks(maxK).map((t) => t.toLocaleString("en-US")) },
    yaxis: { title: { text: "normalized faithfulness" }, gridcolor: "#e2e8f0", zerolinecolor: "#cbd5e1", visible: !empty },
    shapes: empty ? [] : [
      { type: "line", xref: "x", yref: "paper", x0: k || 1, x1: k || 1, y0: 0, y1: 1, line: { color: "#f59e0b", width: 2 } },
      { type: "line", xref: "paper", yref: "y", x0: 0, x1: 1, y0: 1, y1: 1, line: { color: "#94a3b8", width: 1, dash: "dot" } },
    ],
    annotations: note ? [{ text: note, xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false, font: { ...FONT, size: 12, color: "#64748b" } }] : [],
  };
}

/** Normalise GET /curve's answer: a list of points, or {points|curve: [...]}. */
export function curvePoints(data) {
  const list = Array.isArray(data) ? data : (data?.points ?? data?.curve ?? []);
  return list
    .map((p) => ({ k: p.k ?? p.n_edges ?? p.top_k, y: p.normalized ?? p.faithfulness }))
    .filter((p) => p.k > 0 && Number.isFinite(p.y))
    .sort((a, b) => a.k - b.k);
}

export class Chart {
  constructor(Plotly, el) {
    this.Plotly = Plotly;
    this.el = el;
    this.k = 1;
    this.ready = Plotly.newPlot(el, this.traces([], null), layout(1, "Run attribution to see faithfulness"),
      { displayModeBar: false, responsive: true });
  }

  traces(points, exact) {
    return [
      { x: points.map((p) => p.k), y: points.map((p) => p.y), mode: "lines+markers", type: "scatter",
        line: { color: COLORS.pos, width: 2 }, marker: { size: 4, color: COLORS.pos },
        hovertemplate: "%{x} edges: %{y:.3f}<extra></extra>" },
      { x: exact ? [exact.k] : [], y: exact ? [exact.y] : [], mode: "markers", type: "scatter",
        marker: { size: 11, color: "#f59e0b", line: { color: "#ffffff", width: 2 } },
        hovertemplate: "shown circuit (%{x} edges): %{y:.3f}<extra></extra>" },
    ];
  }

  /** New curve (points from curvePoints), or a note instead of it (loading, unavailable). */
  async setCurve(points, note = null) {
    await this.ready;
    this.points = points;
    this.exact = null;
    const maxK = points.length ? points[points.length - 1].k : 0;
    await this.Plotly.react(this.el, this.traces(points, null), layout(this.k, points.length ? null : note, maxK),
      { displayModeBar: false, responsive: true });
  }

  /** Move the slider marker (cheap: one relayout). */
  async mark(k) {
    this.k = k;
    await this.ready;
    if (this.pending || !this.points?.length) return;  // coalesce: one relayout per animation frame
    this.pending = requestAnimationFrame(() => {
      this.pending = null;
      this.Plotly.relayout(this.el, { "shapes[0].x0": this.k, "shapes[0].x1": this.k });
    });
  }

  /** The exact faithfulness of the shown circuit, as a point on the chart. */
  async setExact(k, y) {
    await this.ready;
    this.exact = Number.isFinite(y) ? { k, y } : null;
    await this.Plotly.restyle(this.el, { x: [this.exact ? [k] : []], y: [this.exact ? [y] : []] }, [1]);
  }
}
