// node --test: the Model select's groups and option texts, and the Dtype choices.
import assert from "node:assert/strict";
import { test } from "node:test";

import { SOURCES, dtypeOptions, formatBytes, modelGroups, modelLabel } from "../../frontend/js/models.js";

const M = (name, source, extra = {}) => ({ name, source, ...extra });

test("models are grouped by source in the order bundled, local, cache, hub; others after; empty groups left out", () => {
  const models = [M("gpt2", "hub", { download_needed: true }), M("toy-ioi", "zoo"), M("/ckpt/llama", "local"),
    M("test-model", "test"), M("tracr-reverse", "zoo"), M("pythia-70m", "cache")];
  const groups = modelGroups(models);
  assert.deepEqual(groups.map((g) => g.label), ["Bundled", "Local checkpoints", "Hugging Face cache", "Hugging Face hub (download)", "test"]);
  assert.deepEqual(groups[0].models.map((m) => m.name), ["toy-ioi", "tracr-reverse"]);  // the server's order kept
  assert.deepEqual(modelGroups([M("a", "cache")]).map((g) => g.source), ["cache"]);
  assert.deepEqual(modelGroups([{ name: "no-source" }])[0].label, "Bundled");
  assert.equal(SOURCES.length, 4);
});

test("an option names the model, its size and whether a download is needed", () => {
  assert.equal(modelLabel(M("toy-ioi", "zoo", { size_bytes: 603_000 })), "toy-ioi · 603 kB");
  assert.equal(modelLabel(M("gpt2", "hub", { size_bytes: 548_105_171, download_needed: true })), "gpt2 · 548 MB, download needed");
  assert.equal(modelLabel(M("x", "hub", { size_bytes: null, download_needed: true })), "x · download needed");
  assert.equal(modelLabel(M("y", "zoo")), "y");
});

test("bytes read in powers of 1000 with 2–3 significant digits", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(999), "999 B");
  assert.equal(formatBytes(1000), "1.0 kB");
  assert.equal(formatBytes(15_400_000_000), "15 GB");
  assert.equal(formatBytes(-1), "");
  assert.equal(formatBytes(NaN), "");
});

test("dtype choices: the model's list with float32 first, float32 alone when none is given", () => {
  assert.deepEqual(dtypeOptions({ dtypes: ["bfloat16", "float32", "float16"] }), ["float32", "bfloat16", "float16"]);
  assert.deepEqual(dtypeOptions({ dtypes: [] }), ["float32"]);
  assert.deepEqual(dtypeOptions(undefined), ["float32"]);
  assert.deepEqual(dtypeOptions({ dtypes: ["float32", "float32"] }), ["float32"]);
});
