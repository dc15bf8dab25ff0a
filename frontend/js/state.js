// Pure: the view state that lives in the URL, so a link reopens the same view.
//   ?run=<id>&k=<edges kept>&node=<node with its panel open>   (plus ?token=… when the server wants one)
// Parameters this module does not own (token, anything else) are kept as they are.

const OWN = ["run", "k", "node"];

/** URLSearchParams-compatible input (string starting with '?' or not) → {run, k, node}; bad values → null. */
export function decodeState(search) {
  const p = new URLSearchParams(search);
  const run = p.get("run");
  const kRaw = p.get("k");
  const k = kRaw !== null && /^\d+$/.test(kRaw) && +kRaw > 0 ? +kRaw : null;
  const node = p.get("node");
  return {
    run: run && /^[\w.-]+$/.test(run) ? run : null,
    k,
    node: node && /^(input|logits|a\d+\.h\d+|m\d+)$/.test(node) ? node : null,
  };
}

/** The query string (with '?', or '' when empty) for `state`, keeping foreign parameters of `search`. */
export function encodeState(state, search = "") {
  const p = new URLSearchParams(search);
  for (const key of OWN) p.delete(key);
  const out = new URLSearchParams();
  if (state.run) out.set("run", state.run);
  if (state.run && Number.isInteger(state.k) && state.k > 0) out.set("k", String(state.k));
  if (state.run && state.node) out.set("node", state.node);
  for (const [key, value] of p) out.append(key, value);
  const s = out.toString();
  return s ? `?${s}` : "";
}

/** The API token from the page URL (?token=…), or null. */
export function tokenFrom(search) {
  return new URLSearchParams(search).get("token") || null;
}
