"""Peak resident memory of one engine call, in a fresh process: `python bench/bench_memory.py --pairs N --what eap`.

Prints one JSON line: the peak RSS above the level reached after loading the model and the pairs
and one warm-up call on a single pair (the per-model weight caches: once per model, not per pair);
VmHWM reset through /proc/self/clear_refs, sampled every 2 ms where that is not allowed. Run it
for several N (bench_attribution.py does): flat numbers mean nothing per batch outlives its batch.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

import edgewise as ew


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Peak:
    """Peak RSS during the block: the kernel's high-water mark reset at entry, else a 2 ms sampler."""

    def __enter__(self):
        self.base = rss_bytes()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self.kernel = hwm_bytes() is not None
        except OSError:
            self.kernel = False
        self.peak, self._stop = self.base, False
        if not self.kernel:
            self._t = threading.Thread(target=self._watch, daemon=True)
            self._t.start()
        return self

    def _watch(self):
        while not self._stop:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop = True
        if self.kernel:
            self.peak = hwm_bytes()
        else:
            self._t.join()

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def model_and_pairs(n_pairs: int, tokens: int, layers: int, d_model: int, heads: int):
    cfg = HookedTransformerConfig(n_layers=layers, d_model=d_model, n_ctx=256, d_head=d_model // heads, n_heads=heads,
                                  d_mlp=4 * d_model, d_vocab=50257, act_fn="gelu_new", normalization_type="LN",
                                  device="cpu", seed=0)
    model = HookedTransformer(cfg).eval()
    g = torch.Generator().manual_seed(0)
    recs = []
    for _ in range(n_pairs):
        clean = torch.randint(0, 50257, (tokens,), generator=g).tolist()
        corrupted = list(clean)
        corrupted[tokens // 2] = (clean[tokens // 2] + 1) % 50257
        a, w = torch.randint(0, 50257, (2,), generator=g).tolist()
        recs.append({"clean": clean, "corrupted": corrupted, "answer": a, "wrong_answer": w})
    return model, ew.PromptPairs.from_records(model, recs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, required=True)
    ap.add_argument("--what", choices=["eap", "evaluate", "curve"], default="eap")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    args = ap.parse_args(argv)
    model, pairs = model_and_pairs(args.pairs, args.tokens, args.layers, args.d_model, args.heads)
    graph = ew.Graph.from_model(model)
    scores = torch.linspace(-1, 1, graph.n_edges)[torch.randperm(graph.n_edges, generator=torch.Generator().manual_seed(1))]

    def run(p):
        if args.what == "eap":
            ew.attribute(model, p, method="eap", batch_size=args.batch_size)
        elif args.what == "evaluate":
            ew.evaluate(model, p, ew.Circuit.from_scores(graph, scores, top_k=graph.n_edges // 10), batch_size=args.batch_size)
        else:
            ew.faithfulness_curve(model, p, scores, ks=[0, 10, 100, graph.n_edges // 2], batch_size=args.batch_size)

    run(pairs.subset([0]))  # the per-model weight caches are built once, whatever the number of pairs
    t = time.perf_counter()
    with Peak() as peak:
        run(pairs)
    print(json.dumps({"what": args.what, "pairs": args.pairs, "batch_size": args.batch_size, "peak_mib": round(peak.mib, 1),
                      "seconds": round(time.perf_counter() - t, 1), "kernel_hwm": peak.kernel}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
