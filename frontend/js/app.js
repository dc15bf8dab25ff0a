// The page's shared state: what the form and the explorer both read and write (one object, no framework).
export const app = {
  models: [],
  tasks: [],
  runs: [],            // the newest runs (GET /api/runs): compare choices, titles
  runsPage: [],        // the page of the past-runs list shown
  runsOffset: 0,
  runsTotal: 0,
  datasets: new Map(), // dataset id → GET /api/datasets entry (file name, pairs), for run titles
  source: null,        // {file} or {text, name}: what the next dataset upload sends
  checking: false,     // the upload of `source` is under way
  dataset: null,       // the API's answer for `source`, with .model
  run: null,           // GET /api/runs/{id}
  loaded: [],          // edges of the run, sorted by |score|, at most MAX_SHOWN
  all: null,           // every edge of the run (compare, ROC), fetched when needed
  allScores: new Map(), // name → score of `all`
  own: null,           // an imported file's in_graph edges (the "as imported" rule), else null
  nTotal: 0,
  maxAbs: 0,
  sel: { rule: "top_k", k: 0, t: 0, connected: false },  // the selection rule and its value
  shown: [],           // the edges the selection keeps (the circuit: faithfulness, export)
  node: null,          // node whose panel is open
  cursor: null,        // keyboard cursor node on the graph
  exact: new Map(),    // selectionKey → faithfulness answer, for the open run
  cmp: null,           // compare: {run, loaded, all, maxAbs, curve, shown, classes}
  truth: null,         // known circuit: {task, names: Set, roc, on}
  stopFollow: null,
  faithSeq: 0,
  following: null,     // id of the run the progress bar follows
  cfg: null,           // the open run's model shape (n_layers, n_heads, attn_only, …)
  live: null,          // the followed run's events so far: {id, points, mib, total} (curveview.js)
  curve: null,         // the open run's curve: {id, points: Map k → point, total}
  curveLog: [],        // the open run's chart size after each live curve point
};
