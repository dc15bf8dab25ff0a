"""How close EAP comes to the passes it cannot avoid, on a GPT-2-small-shaped model (random weights).

The floor of EAP is one no-grad forward on the corrupted prompts plus one forward and one backward
on the clean prompts; the backward only needs activation gradients (parameters frozen), which is
what edgewise does. Timings alternate floor / method runs and report medians; every number printed
is a ratio measured in this run, on this machine. Run: `make bench` (or `python bench/bench_attribution.py`).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

import edgewise as ew


class PeakRSS:
    """Peak resident memory above the level at entry (sampled every 2 ms from /proc)."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = False
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    def _watch(self):
        while not self._stop:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def gpt2_shaped(device: str, n_layers=12) -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=n_layers, d_model=768, n_ctx=1024, d_head=64, n_heads=12, d_mlp=3072,
                                  d_vocab=50257, act_fn="gelu_new", normalization_type="LN", device=device, seed=0)
    return HookedTransformer(cfg).eval()


def random_pairs(model, n_pairs: int, n_tokens: int, seed=0):
    g = torch.Generator().manual_seed(seed)
    V = model.cfg.d_vocab
    recs = []
    for _ in range(n_pairs):
        clean = torch.randint(0, V, (n_tokens,), generator=g).tolist()
        corrupted = list(clean)
        corrupted[n_tokens // 2] = (clean[n_tokens // 2] + 1) % V
        a, w = torch.randint(0, V, (2,), generator=g).tolist()
        recs.append({"clean": clean, "corrupted": corrupted, "answer": a, "wrong_answer": w})
    return ew.PromptPairs.from_records(model, recs)


def floor_passes(model, pairs, n_grad_passes: int = 1, n_nograd: int = 1):
    """The bare passes: n_nograd no-grad forwards + n_grad_passes forward+backward (activation grads only)."""
    metric = ew.metrics.get_metric("logit_diff")
    saved = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for batch in pairs.batches(len(pairs), model.cfg.device):
            with torch.no_grad():
                for _ in range(n_nograd):
                    model(batch.corrupted)
            for _ in range(n_grad_passes):
                resid = model.embed(batch.clean) + model.pos_embed(batch.clean)
                resid.requires_grad_(True)
                logits = model(resid, start_at_layer=0)
                metric(logits, batch).sum().backward()
    finally:
        for p, r in zip(model.parameters(), saved):
            p.requires_grad_(r)


def param_grad_floor(model, pairs):
    """For reference: the same passes with parameter gradients, as a training step would do."""
    metric = ew.metrics.get_metric("logit_diff")
    for batch in pairs.batches(len(pairs), model.cfg.device):
        with torch.no_grad():
            model(batch.corrupted)
        metric(model(batch.clean), batch).sum().backward()
    model.zero_grad(set_to_none=True)


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def paired(a, b, repeats: int, device: str):
    """Median seconds of a() and b(), run alternately after one warm-up each."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        for f, out in ((a, ta), (b, tb)):
            sync(device)
            t = time.perf_counter()
            f()
            sync(device)
            out.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def main(argv=None):
    sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ig-steps", type=int, default=5)
    ap.add_argument("--device", default=os.environ.get("EDGEWISE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    dev = args.device
    model = gpt2_shaped(dev)
    pairs = random_pairs(model, args.pairs, args.tokens)
    B = len(pairs)
    n_edges = ew.Graph.from_model(model).n_edges
    print(f"GPT-2-small shape (random weights), {B} pairs × {args.tokens} tokens, {n_edges} edges, "
          f"device {dev}, torch threads {torch.get_num_threads()}, medians of {args.repeats}")

    floor_t, eap_t = paired(lambda: floor_passes(model, pairs),
                            lambda: ew.attribute(model, pairs, method="eap", batch_size=B), args.repeats, dev)
    pg_t, _ = paired(lambda: param_grad_floor(model, pairs), lambda: None, max(2, args.repeats // 2), dev)
    print(f"floor (no-grad fwd + fwd + activation bwd)   {floor_t * 1e3:8.1f} ms")
    print(f"  (with parameter gradients, for reference)  {pg_t * 1e3:8.1f} ms")
    print(f"eap                                          {eap_t * 1e3:8.1f} ms   ratio to floor {eap_t / floor_t:.2f}")

    k = args.ig_steps
    ig_floor, ig_t = paired(lambda: floor_passes(model, pairs, n_grad_passes=k, n_nograd=2),
                            lambda: ew.attribute(model, pairs, method="eap-ig-inputs", ig_steps=k, batch_size=B),
                            max(2, args.repeats // 2), dev)
    print(f"eap-ig-inputs ({k} steps)                     {ig_t * 1e3:8.1f} ms   ratio to its floor "
          f"(2 no-grad fwd + {k}×(fwd+bwd)) {ig_t / ig_floor:.2f}; to eap's floor × {k}: {ig_t / (floor_t * k):.2f}")

    with PeakRSS() as floor_mem:
        floor_passes(model, pairs)
    with PeakRSS() as eap_mem:
        ew.attribute(model, pairs, method="eap", batch_size=B)
    if dev == "cuda":
        print(f"peak memory: cuda max allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    print(f"peak memory above the loaded model: floor {floor_mem.mib:.0f} MiB, eap {eap_mem.mib:.0f} MiB")

    small = HookedTransformer(HookedTransformerConfig(
        n_layers=2, d_model=128, n_ctx=64, d_head=32, n_heads=4, d_mlp=512, d_vocab=1000, act_fn="gelu_new",
        normalization_type="LN", device=dev, seed=0)).eval()
    sp = random_pairs(small, 16, 16)
    n_small = ew.Graph.from_model(small).n_edges
    t = time.perf_counter()
    eap_small = ew.attribute(small, sp, method="eap")
    t_eap = time.perf_counter() - t
    t = time.perf_counter()
    exact_small = ew.attribute(small, sp, method="exact")
    t_exact = time.perf_counter() - t
    corr = torch.corrcoef(torch.stack([eap_small.scores, exact_small.scores]))[0, 1]
    print(f"exact vs eap on a 2-layer, 4-head model ({n_small} edges, 16 pairs × 16 tokens): exact {t_exact:.2f} s, "
          f"eap {t_eap * 1e3:.0f} ms, speedup {t_exact / t_eap:.0f}×, score correlation {corr:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
