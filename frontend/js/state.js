// Pure: the view state that lives in the URL, so a link reopens the same view.
//   ?run=<id>            the run shown
//   &k=<edges kept>      top-k rule: how many edges
//   &rule=abs&t=<score>  |score| threshold rule: every edge with |score| ≥ t
//   &rule=top_k|own      top-k, or an imported file's own in_graph edges (absent: the run's default)
//   &connected=1         then keep only edges on an input → logits path
//   &cmp=<id>            compare with this run
//   &node=<node>         the node whose panel is open
// (plus ?token=… when the server wants one). Parameters this module does not own are kept as they are.

const OWN = ["run", "k", "rule", "t", "connected", "cmp", "node"];
export const RULES = ["top_k", "abs", "own"];
const ID = /^[\w.-]+$/;

/** URLSearchParams-compatible input → {run, k, rule, t, connected, cmp, node}; bad values → null/false. */
export function decodeState(search) {
  const p = new URLSearchParams(search);
  const run = p.get("run");
  const kRaw = p.get("k");
  const k = kRaw !== null && /^\d+$/.test(kRaw) && +kRaw > 0 ? +kRaw : null;
  const tRaw = p.get("t");
  const t = tRaw !== null && /^\d*\.?\d+(e[-+]?\d+)?$/i.test(tRaw) ? +tRaw : null;
  const rule = RULES.includes(p.get("rule")) ? p.get("rule") : null;
  const cmp = p.get("cmp");
  const node = p.get("node");
  return {
    run: run && ID.test(run) ? run : null,
    k,
    rule,
    t,
    connected: p.get("connected") === "1",
    cmp: cmp && ID.test(cmp) && cmp !== run ? cmp : null,
    node: node && /^(input|logits|a\d+\.h\d+|m\d+)$/.test(node) ? node : null,
  };
}

/** The query string (with '?', or '' when empty) for `state`, keeping foreign parameters of `search`. */
export function encodeState(state, search = "") {
  const p = new URLSearchParams(search);
  for (const key of OWN) p.delete(key);
  const out = new URLSearchParams();
  if (state.run) {
    out.set("run", state.run);
    if (state.rule && RULES.includes(state.rule)) out.set("rule", state.rule);
    if (state.rule === "abs") {
      if (Number.isFinite(state.t) && state.t >= 0) out.set("t", String(state.t));  // shortest round-trip form
    } else if (state.rule !== "own" && Number.isInteger(state.k) && state.k > 0) out.set("k", String(state.k));
    if (state.connected) out.set("connected", "1");
    if (state.cmp && state.cmp !== state.run) out.set("cmp", state.cmp);
    if (state.node) out.set("node", state.node);
  }
  for (const [key, value] of p) out.append(key, value);
  const s = out.toString();
  return s ? `?${s}` : "";
}

/** The API token from the page URL (?token=…), or null. */
export function tokenFrom(search) {
  return new URLSearchParams(search).get("token") || null;
}
