// The HTTP API (DESIGN.md, "HTTP API"): one function per call. With ?token=… in the page URL every
// call carries `Authorization: Bearer …` (and the EventSource URL ?token=…, as EventSource sends no headers).
import { formatDetail, guessFormat } from "./format.js";
import { tokenFrom } from "./state.js";

const token = tokenFrom(window.location.search);

export class ApiError extends Error {
  constructor(status, detail, path) {
    const lines = formatDetail(detail);
    super(lines.join("\n") || `HTTP ${status} on ${path}`);
    this.status = status;
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
    throw new ApiError(res.status, detail, path);
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
export const listRuns = () => request("/api/runs");
export const getRun = (id) => request(`/api/runs/${enc(id)}`);
export const cancelRun = (id) => request(`/api/runs/${enc(id)}/cancel`, { method: "POST" });
export const edges = (id, params = {}) => request(`/api/runs/${enc(id)}/edges${query(params)}`);
export const curve = (id) => request(`/api/runs/${enc(id)}/curve`);
export const faithfulness = (id, body, signal) =>
  request(`/api/runs/${enc(id)}/faithfulness`, { method: "POST", json: body, signal });
export const circuit = (id, params = {}) => request(`/api/runs/${enc(id)}/circuit${query(params)}`);
export const importCircuit = (json) => request("/api/circuits", { method: "POST", json });

const TERMINAL = new Set(["done", "failed", "cancelled"]);

/**
 * Follow a run until it ends: server-sent events when they work, polling GET /api/runs/{id} when
 * they do not. onUpdate({status, progress, error}) is called for every change; returns stop().
 */
export function followRun(id, onUpdate) {
  let stopped = false;
  let source = null;
  let timer = null;
  let last = null;

  const emit = (info) => {
    if (stopped || !info) return;
    const key = `${info.status}|${info.progress}`;
    if (key === last) return;
    last = key;
    onUpdate(info);
    if (TERMINAL.has(info.status)) stop();
  };

  const poll = async () => {
    if (stopped) return;
    try {
      emit(await getRun(id));
    } catch (e) {
      if (e.status === 404) return emit({ status: "failed", progress: 0, error: e.message });
    }
    if (!stopped) timer = setTimeout(poll, source ? 3000 : 1000);
  };

  const parse = (ev, status) => {
    let data = {};
    try { data = JSON.parse(ev.data); } catch { data = { progress: parseFloat(ev.data) }; }
    if (typeof data === "number") data = { progress: data };
    const st = data.status ?? status;
    emit({ ...data, status: st ?? "running", progress: data.progress ?? (st === "done" ? 1 : 0) });
  };

  if (typeof EventSource !== "undefined") {
    source = new EventSource(withToken(`/api/runs/${enc(id)}/events`));
    source.addEventListener("message", (ev) => parse(ev));
    source.addEventListener("progress", (ev) => parse(ev, "running"));
    for (const st of TERMINAL) source.addEventListener(st, (ev) => parse(ev, st));
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
