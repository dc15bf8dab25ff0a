// Load the npm libraries the backend serves under /vendor/; a CDN copy only when the local one fails.
const LIBS = {
  cytoscape: ["/vendor/cytoscape.min.js", "https://cdn.jsdelivr.net/npm/cytoscape@3.34.4/dist/cytoscape.min.js"],
  Plotly: ["/vendor/plotly-basic.min.js", "https://cdn.jsdelivr.net/npm/plotly.js-basic-dist-min@4.1.1/plotly-basic.min.js"],
};

function script(src) {
  return new Promise((resolve, reject) => {
    const el = document.createElement("script");
    el.src = src;
    el.async = true;
    el.onload = resolve;
    el.onerror = () => { el.remove(); reject(new Error(`failed to load ${src}`)); };
    document.head.appendChild(el);
  });
}

/** Resolves to window[global] once loaded (local first, then the CDN). */
export async function load(global) {
  if (window[global]) return window[global];
  const [local, cdn] = LIBS[global];
  try {
    await script(local);
  } catch {
    console.warn(`${local} missing (run \`npm ci\` in frontend/); trying ${cdn}`);
    await script(cdn);
  }
  return window[global];
}
