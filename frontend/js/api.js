// The HTTP API (DESIGN.md, "HTTP API"): one function per call. With ?token=… in the page URL every
// call carries `Authorization: Bearer …` (and the EventSource URL ?token=…, as EventSource sends no headers).
import { formatDetail, guessFormat } from "./format.js";
import { tokenFrom } from "./state.js";

const token = tokenFrom(window.location.search);

export class ApiError extends Error {
  constructor(status, detail, path, retryAfter = null) {
    const lines = formatDetail(detail);
    super(lines.join("\n") || `HTTP ${status} on ${path}`);
    this.status = status;
    this.retryAfter = retryAfter;  // seconds, from a 503's or 429's Retry-After
    this.detail = detail;
    this.lines = lines.length ? lines : [this.message];
  }
}

function withToken(url) {
  if (!token) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

async function request(path, { method = "GET", json, body, signal, raw = false } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, `cannot reach the server (${e.message})`, path);
  }
  if (!res.ok) {
    let detail = `HTTP ${res.status} ${res.statusText} on ${method} ${path}`;
    try {
      const data = await res.json();
      detail = data.detail ?? data;
    } catch { /* not JSON: keep the status line */ }
    const wait = Number(res.headers.get("Retry-After"));
    throw new ApiError(res.status, detail, path, res.headers.has("Retry-After") && Number.isFinite(wait) ? wait : null);
  }
  if (raw) return res;
  if (res.status === 204) return null;
  const type = res.headers.get("content-type") || "";
  return type.includes("json") ? res.json() : res.text();
}

const enc = encodeURIComponent;
const query = (params) => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : "";
};

export const health = () => request("/api/health");
export const models = () => request("/api/models");
export const tasks = () => request("/api/tasks");
/** A bundled task's known circuit: {name, model, edges: [names], source}. */
export const taskCircuit = (name) => request(`/api/tasks/${enc(name)}/circuit`);
export const datasets = () => request("/api/datasets");
export const taskPairs = (name, format = "csv") =>
  request(`/api/tasks/${enc(name)}/pairs${query({ format })}`, { raw: true }).then((r) => r.text());

/** Upload pairs as a file (a File, or text sent as one named `name`) for `model`. */
export function uploadDataset({ file, text, name, model }) {
  const form = new FormData();
  if (!file) {
    const ext = guessFormat(text);
    const fname = name && /\.(csv|jsonl?)$/i.test(name) ? name : `pasted.${ext}`;
    file = new File([text], fname, { type: ext === "csv" ? "text/csv" : "application/json" });
  }
  form.append("file", file, file.name);
  form.append("model", model);
  return request("/api/datasets", { method: "POST", body: form });
}

export const createRun = (body) => request("/api/runs", { method: "POST", json: body });
/** One page of runs, newest first: {runs, total} (total from X-Total-Count). */
export async function listRuns({ limit = 50, offset = 0 } = {}) {
  const res = await request(`/api/runs${query({ limit, offset })}`, { raw: true });
  const runs = await res.json();
  const total = Number(res.headers.get("X-Total-Count"));
  return { runs, total: Number.isFinite(total) && res.headers.has("X-Total-Count") ? total : runs.length };
}
export const getRun = (id) => request(`/api/runs/${enc(id)}`);
export const renameRun = (id, name) => request(`/api/runs/${enc(id)}`, { method: "PATCH", json: { name } });
export const deleteRun = (id) => request(`/api/runs/${enc(id)}`, { method: "DELETE" });
export const cancelRun = (id) => request(`/api/runs/${enc(id)}/cancel`, { method: "POST" });
export const edges = (id, params = {}) => request(`/api/runs/${enc(id)}/edges${query(params)}`);
export const curve = (id) => request(`/api/runs/${enc(id)}/curve`);
/** MIB's CPR/CMD of a run (409 until computed). */
export const mib = (id) => request(`/api/runs/${enc(id)}/mib`);
/** Per-pair metrics at a selection ({top_k | min_abs_score | own, connected, limit}), worst first. */
export const pairs = (id, params = {}, signal) => request(`/api/runs/${enc(id)}/pairs${query(params)}`, { signal });
export const faithfulness = (id, body, signal) =>
  request(`/api/runs/${enc(id)}/faithfulness`, { method: "POST", json: body, signal });
export const circuit = (id, params = {}) => request(`/api/runs/${enc(id)}/circuit${query(params)}`);
export const importCircuit = (json) => request("/api/circuits", { method: "POST", json });

const TERMINAL = new Set(["done", "failed", "cancelled"]);

/**
 * Follow a run until it ends: server-sent events when they work, polling GET /api/runs/{id} when
 * they do not. Handlers (all optional): onProgress({status, progress, stage}) for every change,
 * onScored(run) once the scores are stored (the graph can be drawn), onCurve(point) per faithfulness-
 * curve point, onMib(scores) after the curve, onEnd(run) once at the end. Returns stop().
 */
export function followRun(id, { onProgress, onScored, onCurve, onMib, onEnd } = {}) {
  let stopped = false, source = null, timer = null, last = null, scored = false;

  const progress = (info) => {
    const key = `${info.status}|${info.progress}|${info.stage}`;
    if (stopped || key === last) return;
    last = key;
    onProgress?.(info);
  };
  const scoredOnce = (run) => {
    if (stopped || scored) return;
    scored = true;
    onScored?.(run);
  };
  const end = (run) => {
    if (stopped) return;
    if (run.scored) scoredOnce(run);  // the stream may have been missed: the end still opens it
    stop();
    onEnd?.(run);
  };

  const poll = async () => {
    if (stopped) return;
    try {
      const run = await getRun(id);
      if (TERMINAL.has(run.status)) return end(run);
      if (run.scored) scoredOnce(run);
      progress(run);
    } catch (e) {
      if (e.status === 404) return end({ id, status: "failed", progress: 0, error: e.message });
    }
    if (!stopped) timer = setTimeout(poll, source ? 3000 : 1000);
  };

  const data = (ev) => { try { return JSON.parse(ev.data); } catch { return {}; } };

  if (typeof EventSource !== "undefined") {
    source = new EventSource(withToken(`/api/runs/${enc(id)}/events`));
    source.addEventListener("progress", (ev) => progress({ status: "running", ...data(ev) }));
    source.addEventListener("scored", (ev) => scoredOnce(data(ev)));
    source.addEventListener("curve", (ev) => { if (!stopped) onCurve?.(data(ev)); });
    source.addEventListener("mib", (ev) => { if (!stopped) onMib?.(data(ev)); });
    for (const st of TERMINAL) source.addEventListener(st, (ev) => end({ ...data(ev), status: st }));
    source.onerror = () => {  // closed or unsupported: fall back to polling (which also confirms the end)
      source.close();
      source = null;
      if (!stopped && !timer) poll();
    };
    // the stream may end right after "done"; a slow poll keeps the status honest either way
    timer = setTimeout(poll, 3000);
  } else {
    poll();
  }

  function stop() {
    stopped = true;
    if (source) source.close();
    clearTimeout(timer);
  }
  return stop;
}
