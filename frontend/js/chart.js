// The plotly charts: normalized faithfulness vs number of edges kept (log x), with the slider's
// position as a vertical line, the exact value of the shown circuit as a point and, when comparing,
// the other run's curve; and the ROC curve against a known circuit.
import { COLORS } from "./look.js";

const FONT = { family: "Inter, system-ui, sans-serif", size: 11, color: "#334155" };
const CONFIG = { displayModeBar: false, responsive: true };

/** Log-axis ticks 1, 2, 5, 10, 20, 50, … up to the largest k (plotly's own minor labels collide). */
export function logTicks(maxK) {
  const ticks = [];
  for (let d = 1; d <= Math.max(maxK, 1); d *= 10) for (const m of [1, 2, 5]) if (m * d <= maxK) ticks.push(m * d);
  return ticks;
}

/** Normalise GET /curve's answer: a list of points, or {points|curve: [...]}. */
export function curvePoints(data) {
  const list = Array.isArray(data) ? data : (data?.points ?? data?.curve ?? []);
  return list
    .map((p) => ({ k: p.k ?? p.n_edges ?? p.top_k, y: p.normalized ?? p.faithfulness }))
    .filter((p) => p.k > 0 && Number.isFinite(p.y))
    .sort((a, b) => a.k - b.k);
}

const note = (text) => ({ text, xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false,
  font: { ...FONT, size: 12, color: "#64748b" } });

export class Chart {
  constructor(Plotly, el) {
    this.Plotly = Plotly;
    this.el = el;
    this.k = 1;
    this.points = [];
    this.pointsB = null;
    this.labels = { a: "A", b: "B" };
    this.exact = null;
    this.note = "Run attribution to see faithfulness";
    this.ready = Plotly.newPlot(el, this.traces(), this.layout(), CONFIG);
  }

  traces() {
    const a = this.points, b = this.pointsB ?? [], ex = this.exact;
    return [
      { x: a.map((p) => p.k), y: a.map((p) => p.y), mode: "lines+markers", type: "scatter", name: this.labels.a,
        line: { color: COLORS.pos, width: 2 }, marker: { size: 4, color: COLORS.pos },
        hovertemplate: `${this.labels.a}: %{x} edges, %{y:.3f}<extra></extra>` },
      { x: ex ? [ex.k] : [], y: ex ? [ex.y] : [], mode: "markers", type: "scatter", name: "shown circuit",
        marker: { size: 11, color: "#f59e0b", line: { color: "#ffffff", width: 2 } },
        hovertemplate: "shown circuit (%{x} edges): %{y:.3f}<extra></extra>" },
      { x: b.map((p) => p.k), y: b.map((p) => p.y), mode: "lines+markers", type: "scatter", name: this.labels.b,
        line: { color: COLORS.b, width: 2, dash: "dash" }, marker: { size: 4, color: COLORS.b },
        hovertemplate: `${this.labels.b}: %{x} edges, %{y:.3f}<extra></extra>`, visible: b.length > 0 },
    ];
  }

  layout() {
    const ks = [...this.points, ...(this.pointsB ?? [])].map((p) => p.k).concat(this.exact ? [this.exact.k] : []);
    const maxK = ks.length ? Math.max(...ks) : 0;
    const empty = maxK === 0;
    const onlyDot = !this.points.length && !!this.exact;
    return {
      margin: { l: 48, r: 12, t: 8, b: 36 },
      font: FONT,
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "#ffffff",
      showlegend: !!this.pointsB?.length,
      legend: { orientation: "h", x: 1, xanchor: "right", y: 0.02, yanchor: "bottom", bgcolor: "rgba(255,255,255,.8)" },
      xaxis: { type: "log", title: { text: "edges kept", standoff: 4 }, gridcolor: "#e2e8f0", zeroline: false, visible: !empty,
        tickmode: "array", tickvals: logTicks(Math.max(maxK, onlyDot ? 10 * maxK : 0)),
        ticktext: logTicks(Math.max(maxK, onlyDot ? 10 * maxK : 0)).map((t) => t.toLocaleString("en-US")),
        ...(onlyDot ? { range: [Math.log10(Math.max(1, maxK / 10)), Math.log10(maxK * 10)] } : {}) },
      yaxis: { title: { text: "faithfulness", standoff: 2 }, gridcolor: "#e2e8f0", zerolinecolor: "#cbd5e1", visible: !empty, automargin: true },
      shapes: empty ? [] : [
        { type: "line", xref: "x", yref: "paper", x0: this.k || 1, x1: this.k || 1, y0: 0, y1: 1, line: { color: "#f59e0b", width: 2 } },
        { type: "line", xref: "paper", yref: "y", x0: 0, x1: 1, y0: 1, y1: 1, line: { color: "#94a3b8", width: 1, dash: "dot" } },
      ],
      annotations: empty && this.note ? [note(this.note)] : [],
    };
  }

  async render() {
    await this.ready;
    await this.Plotly.react(this.el, this.traces(), this.layout(), CONFIG);
  }

  /** New curve of the open run (points from curvePoints); note: what the empty chart says instead. */
  async setCurve(points, noteText = null) {
    this.points = points;
    this.exact = null;
    this.note = noteText;
    await this.render();
  }

  /** More points of the open run's curve (a live run's `curve` events): the shown circuit's dot stays. */
  async setPoints(points, noteText = null) {
    this.points = points;
    this.note = noteText;
    await this.render();
  }

  /** The other run's curve (compare), or null to remove it. labels: {a, b} for the legend. */
  async setCompare(points, labels = { a: "A", b: "B" }) {
    this.pointsB = points;
    this.labels = labels;
    await this.render();
  }

  /** Fit the plot to its box again (the box changed size: the ROC chart came or went). */
  resize() {
    if (this.el.offsetParent) this.Plotly.Plots.resize(this.el);
  }

  /** Move the slider marker (cheap: one relayout, coalesced to one per animation frame). */
  async mark(k) {
    this.k = k;
    await this.ready;
    if (this.pending || !(this.points.length || this.exact || this.pointsB?.length)) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = null;
      this.Plotly.relayout(this.el, { "shapes[0].x0": this.k, "shapes[0].x1": this.k });
    });
  }

  /** The exact faithfulness of the shown circuit as a point; null y removes it (e.g. while dragging). */
  async setExact(k, y) {
    await this.ready;
    const had = !!this.exact;
    this.exact = Number.isFinite(y) ? { k, y } : null;
    // without a curve the axes depend on the point: a full redraw; else move the one trace
    if (!this.points.length && (had || this.exact)) return this.render();
    await this.Plotly.restyle(this.el, { x: [this.exact ? [k] : []], y: [this.exact ? [y] : []] }, [1]);
  }
}

/** ROC of the ranking against a known circuit, the diagonal, and the shown circuit as a point. */
export class RocChart {
  constructor(Plotly, el) {
    this.Plotly = Plotly;
    this.el = el;
    this.ready = null;
  }

  async set(curve, point = null) {
    const traces = [
      { x: [0, 1], y: [0, 1], mode: "lines", type: "scatter", line: { color: "#cbd5e1", width: 1, dash: "dot" }, hoverinfo: "skip" },
      { x: curve?.fpr ?? [], y: curve?.tpr ?? [], mode: "lines", type: "scatter", line: { color: COLORS.truth, width: 2, shape: "linear" },
        hovertemplate: "FPR %{x:.3f}, TPR %{y:.3f}<extra></extra>" },
      { x: point ? [point.fpr] : [], y: point ? [point.tpr] : [], mode: "markers", type: "scatter",
        marker: { size: 10, color: "#f59e0b", line: { color: "#ffffff", width: 2 } },
        hovertemplate: "shown circuit: FPR %{x:.3f}, TPR %{y:.3f}<extra></extra>" },
    ];
    const layout = {
      margin: { l: 40, r: 8, t: 8, b: 36 }, font: FONT, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#ffffff", showlegend: false,
      xaxis: { title: { text: "false positive rate", standoff: 4 }, range: [-0.02, 1.02], gridcolor: "#e2e8f0", zeroline: false, tickvals: [0, 0.5, 1] },
      yaxis: { title: { text: "true positive rate", standoff: 2 }, range: [-0.02, 1.04], gridcolor: "#e2e8f0", zeroline: false, tickvals: [0, 0.5, 1], automargin: true },
      annotations: curve ? [{ text: `AUC ${curve.auc.toFixed(3)}`, xref: "paper", yref: "paper", x: 0.97, y: 0.05,
        xanchor: "right", showarrow: false, font: { ...FONT, size: 12, color: "#0f172a" } }] : [],
    };
    this.ready = this.ready ? this.ready.then(() => this.Plotly.react(this.el, traces, layout, CONFIG))
      : this.Plotly.newPlot(this.el, traces, layout, CONFIG);
    await this.ready;
  }

  /** Move the shown circuit's point. */
  async mark(point) {
    if (!this.ready) return;
    await this.ready;
    await this.Plotly.restyle(this.el, { x: [point ? [point.fpr] : []], y: [point ? [point.tpr] : []] }, [2]);
  }
}
