// The page's shared state: what the form and the explorer both read and write (one object, no framework).
export const app = {
  models: [],
  tasks: [],
  runs: [],
  source: null,        // {file} or {text, name}: what the next dataset upload sends
  dataset: null,       // the API's answer for `source`, with .model
  run: null,           // GET /api/runs/{id}
  loaded: [],          // edges of the run, sorted by |score|, at most MAX_SHOWN
  nTotal: 0,
  maxAbs: 0,
  k: 0,
  shown: [],
  node: null,
  exact: new Map(),    // k → faithfulness answer, for the open run
  stopFollow: null,
  faithSeq: 0,
  following: null,     // id of the run the progress bar follows
  cfg: null,           // the open run's model shape (n_layers, n_heads, attn_only, …)
};
