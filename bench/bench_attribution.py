"""How close EAP, EAP-IG and circuit evaluation come to the passes they cannot avoid, on a
GPT-2-small-shaped model (random weights). Every number printed is a ratio measured in this run.

Floors: EAP's is one no-grad forward on the corrupted prompts plus one forward and one backward on
the clean prompts (activation gradients only, parameters frozen, as edgewise runs); EAP-IG-inputs'
is 2 no-grad forwards + m × (forward + backward). A patched forward is compared with a plain
forward. On a CPU the clock is this thread's CPU time with one torch thread (other processes on a
shared machine then barely move the ratios); `--wall` uses wall time and torch's default threads.
Each ratio is a method run sandwiched between two floor runs, median over repeats.
Peak memory runs bench_memory.py in a fresh process per pair count.
Run: `make bench` (or `python bench/bench_attribution.py`); `EAPIG_SRC=<EAP-IG checkout>` adds
EAP-IG's own `attribute` on the same model and pairs (a patched copy is made in a temp dir).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

import edgewise as ew
from edgewise.activations import ablated_acts, edge_hooks_enabled
from edgewise.evaluate import CircuitEvaluator, curve_ks, top_k_masks
from edgewise.patching import Patcher

HERE = Path(__file__).resolve().parent


def gpt2_shaped(device: str, n_layers=12, d_model=768, n_heads=12) -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=n_layers, d_model=d_model, n_ctx=1024, d_head=d_model // n_heads,
                                  n_heads=n_heads, d_mlp=4 * d_model, d_vocab=50257, act_fn="gelu_new",
                                  normalization_type="LN", device=device, seed=0)
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


def _leaf(x, hook):
    return x.detach().requires_grad_(True)


def floor_passes(model, pairs, n_grad_passes: int = 1, n_nograd: int = 1, batch_size: int | None = None):
    """The bare passes: n_nograd no-grad forwards + n_grad_passes forward+backward (activation grads only).

    The gradient starts at a leaf made of the first block's residual input (a hook), so the same
    floor holds for learned, rotary and no positional embeddings alike.
    """
    metric = ew.metrics.get_metric("logit_diff")
    saved = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for batch in pairs.batches(batch_size or len(pairs), model.cfg.device):
            with torch.no_grad():
                for _ in range(n_nograd):
                    model(batch.corrupted)
            for _ in range(n_grad_passes):
                with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", _leaf)]):
                    metric(model(batch.clean), batch).float().sum().backward()
    finally:
        for p, r in zip(model.parameters(), saved):
            p.requires_grad_(r)


class Clock:
    def __init__(self, device: str, wall: bool):
        self.device = device
        self.cpu = device == "cpu" and not wall
        self.name = "this thread's CPU time, 1 torch thread" if self.cpu else f"wall time, {torch.get_num_threads()} threads"

    def time(self, f) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()
        t = time.thread_time() if self.cpu else time.perf_counter()
        f()
        if self.device == "cuda":
            torch.cuda.synchronize()
        return (time.thread_time() if self.cpu else time.perf_counter()) - t

    def paired(self, a, b, repeats: int) -> tuple[float, float]:
        """Medians of a() and b() run alternately, after one warm-up of each (s)."""
        a(), b()
        ta, tb = [], []
        for _ in range(repeats):
            ta.append(self.time(a))
            tb.append(self.time(b))
        return statistics.median(ta), statistics.median(tb)

    def ratio(self, floor, method, repeats: int) -> tuple[float, float, float]:
        """Median of method / mean(floor before, floor after), and the median times (s)."""
        floor(), method()
        ratios, tf, tm = [], [], []
        for _ in range(repeats):
            a, b, c = self.time(floor), self.time(method), self.time(floor)
            ratios.append(2 * b / (a + c))
            tf.append((a + c) / 2)
            tm.append(b)
        return statistics.median(ratios), statistics.median(tf), statistics.median(tm)


def patched_vs_plain(model, pairs, scores, clock, repeats):
    """Patched forward / plain forward of the top-k circuits (by the given scores) at 1, 10, 50 %."""
    graph = ew.Graph.from_model(model)
    batch = next(pairs.batches(len(pairs), model.cfg.device))
    patcher = Patcher(model, graph)
    with edge_hooks_enabled(model), torch.no_grad():
        abl = patcher.prepare(ablated_acts(model, graph, batch, "resample")[0])
        out = []
        for frac in (0.01, 0.1, 0.5):
            (keep,) = top_k_masks(graph, scores, [int(frac * graph.n_edges)])
            removed = graph.edge_mask & ~keep
            r, _, _ = clock.ratio(lambda: model(batch.clean), lambda: patcher.logits(batch, abl, removed), repeats)
            out.append((frac, r))
    return out


def eap_ig_reference(src: str, model, pairs, batch_size: int):
    """EAP-IG's own `attribute` (method 'EAP') on our model and pairs: a copy of `src` patched to run
    on the CPU (it hard-codes cuda and tokenizes strings) in a temp dir; returns (seconds fn, scores by edge)."""
    import importlib
    import re
    import shutil
    import tempfile

    root = Path(src)
    pkg = next(p for p in [root / "src" / "eap", root / "eap", root] if (p / "attribute.py").exists())
    tmp = Path(tempfile.mkdtemp(prefix="eapig-cpu-")) / "eap"
    shutil.copytree(pkg, tmp)
    for f in tmp.glob("*.py"):
        text = f.read_text().replace("device='cuda'", "device=model.cfg.device")
        if f.name == "graph.py":  # drop the plotting import (matplotlib is not a dependency here)
            text = re.sub(r"from \.visualization import .*\n", "get_color = generate_random_color = None\n", text)
        f.write_text(text)
    sys.path.insert(0, str(tmp.parent))
    eap_graph, eap_attribute = importlib.import_module("eap.graph"), importlib.import_module("eap.attribute")

    def tokenize(model_, tokens, max_length=None):  # our batches are token ids already, right-padded
        mask = torch.ones_like(tokens)
        return tokens, mask, mask.sum(1), tokens.shape[1]
    eap_attribute.tokenize_plus = tokenize
    loader = [(b.clean, b.corrupted, (b.answer, b.wrong_answer)) for b in pairs.batches(batch_size, model.cfg.device)]

    def metric(logits, clean_logits, input_lengths, label):
        last = logits[torch.arange(len(logits)), input_lengths - 1]
        a, w = label
        return (last.gather(1, a[:, None]) - last.gather(1, w[:, None])).sum()

    graph = eap_graph.Graph.from_model(model)

    def run():
        model.cfg.use_split_qkv_input = model.cfg.use_attn_result = model.cfg.use_hook_mlp_in = True
        try:
            eap_attribute.attribute(model, graph, loader, metric, method="EAP", quiet=True)
        finally:
            model.cfg.use_split_qkv_input = model.cfg.use_attn_result = False
    return run, lambda: {name: float(e.score) for name, e in graph.edges.items()}


def memory(pairs_list, batch_size) -> list[dict]:
    out = []
    for what in ("eap", "evaluate", "curve"):
        for n in pairs_list:
            r = subprocess.run([sys.executable, str(HERE / "bench_memory.py"), "--pairs", str(n), "--what", what,
                                "--batch-size", str(batch_size)], capture_output=True, text=True)
            out.append(json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else
                       {"what": what, "pairs": n, "error": r.stderr.strip().splitlines()[-1:]})
    return out


def main(argv=None):
    sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ig-steps", type=int, default=5)
    ap.add_argument("--wall", action="store_true", help="wall-clock time with torch's default threads")
    ap.add_argument("--memory-pairs", default="16,256,2048", help="pair counts for the peak-memory runs ('' skips)")
    ap.add_argument("--device", default=os.environ.get("EDGEWISE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))
    args = ap.parse_args(argv)
    dev = args.device
    if dev == "cpu" and not args.wall:
        torch.set_num_threads(1)
    clock = Clock(dev, args.wall)
    torch.manual_seed(0)
    model = gpt2_shaped(dev)
    pairs = random_pairs(model, args.pairs, args.tokens)
    B = len(pairs)
    graph = ew.Graph.from_model(model)
    print(f"GPT-2-small shape (random weights), {B} pairs × {args.tokens} tokens, {graph.n_edges} edges, device {dev}; "
          f"clock: {clock.name}; medians of {args.repeats}")

    eap = lambda: ew.attribute(model, pairs, method="eap", batch_size=B)  # noqa: E731
    r, tf, te = clock.ratio(lambda: floor_passes(model, pairs), eap, args.repeats)
    print(f"eap / floor                                   {r:.3f}   (floor {tf:.2f} s, eap {te:.2f} s)")
    k = args.ig_steps
    r, tf, ti = clock.ratio(lambda: floor_passes(model, pairs, n_grad_passes=k, n_nograd=2),
                            lambda: ew.attribute(model, pairs, method="eap-ig-inputs", ig_steps=k, batch_size=B),
                            max(1, args.repeats - 1))
    print(f"eap-ig-inputs ({k} steps) / its floor           {r:.3f}   (2 no-grad fwd + {k}×(fwd+bwd): {tf:.2f} s)")

    scores = ew.attribute(model, pairs, method="eap", batch_size=B).scores
    for label, s in (("EAP top-k", scores), ("random top-k", torch.randn(graph.n_edges, generator=torch.Generator().manual_seed(0)))):
        rs = patched_vs_plain(model, pairs, s, clock, args.repeats)
        print(f"patched forward / plain forward ({label}):    " + "   ".join(f"{f:.0%} kept {x:.3f}" for f, x in rs))

    ks = curve_ks(graph.n_edges)
    ev = lambda: CircuitEvaluator(model, pairs, batch_size=B).metrics(top_k_masks(graph, scores, ks))  # noqa: E731
    tc, te = clock.time(ev), clock.time(eap)
    print(f"faithfulness curve ({len(ks)} points) / eap       {tc / te:.1f}   (curve {tc:.1f} s: one patched forward per point)")

    small = HookedTransformer(HookedTransformerConfig(
        n_layers=2, d_model=128, n_ctx=64, d_head=32, n_heads=4, d_mlp=512, d_vocab=1000, act_fn="gelu_new",
        normalization_type="LN", device=dev, seed=0)).eval()
    sp = random_pairs(small, 16, 16)
    te = clock.time(lambda: ew.attribute(small, sp, method="eap"))
    tx = clock.time(lambda: ew.attribute(small, sp, method="exact"))
    corr = torch.corrcoef(torch.stack([ew.attribute(small, sp).scores, ew.attribute(small, sp, method="exact").scores]))[0, 1]
    print(f"exact / eap on a 2-layer, 4-head model ({ew.Graph.from_model(small).n_edges} edges, 16 pairs × 16 tokens): "
          f"{tx / te:.0f}   (score correlation {corr:.3f})")

    src = os.environ.get("EAPIG_SRC")
    if src:
        run, theirs = eap_ig_reference(src, model, pairs, B)
        r, tf, tt = clock.ratio(lambda: floor_passes(model, pairs), run, 1)
        r_ours, _, _ = clock.ratio(lambda: floor_passes(model, pairs), eap, 1)
        ours = dict(zip(graph.edge_names, scores.tolist()))
        got = theirs()
        diff = max(abs(ours[e] - got[e]) for e in ours)
        scale = max(abs(v) for v in ours.values())
        print(f"EAP-IG's attribute('EAP') / floor {r:.2f}, edgewise eap / floor {r_ours:.2f}: edgewise {r / r_ours:.1f}× faster; "
              f"max |score difference| {diff:.2e} (max |score| {scale:.2e})")
    else:
        print("EAP-IG comparison skipped: set EAPIG_SRC to an EAP-IG checkout (github.com/hannamw/EAP-IG)")

    if args.memory_pairs:
        counts = [int(x) for x in args.memory_pairs.split(",")]
        print("peak RSS above the loaded model (4 layers, d_model 256, vocab 50257, batch 16 × 24 tokens, fresh process each):")
        for row in memory(counts, 16):
            print("   " + (f"{row['what']:9s} {row['pairs']:5d} pairs: {row['peak_mib']:7.1f} MiB  ({row['seconds']} s)"
                           if "peak_mib" in row else f"{row['what']} {row['pairs']} pairs: failed {row['error']}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
