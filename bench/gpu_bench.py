"""What edgewise costs on a GPU: EAP against its floor, EAP-IG, a patched forward, memory, pairs/s.

For GPT-2-small and GPT-2-medium shapes (float32) and a Llama-3.2-1B shape (bf16, GQA ungrouped,
rotary, gated SiLU, RMSNorm), random weights, `--pairs` prompt pairs of `--tokens` tokens. Every
figure is a ratio or a rate measured in this run (medians of alternating repeats), printed as a table:
    eap/floor        EAP ÷ (no-grad fwd on corrupted + fwd + activation-only bwd on clean)
    ig5/floor×5      eap-ig-inputs with 5 steps ÷ (2 no-grad fwd + 5 × (fwd + bwd))
    patched/plain    one patched forward (10 % of edges kept) ÷ one plain forward
    peak GiB         torch.cuda.max_memory_allocated during EAP, above the loaded model
    pairs/s          pairs scored per second by EAP
Run by bench/gpu.sh; `--smoke` runs a tiny shape on whatever device there is (a check of the script).
"""
from __future__ import annotations

import argparse
import sys
import warnings

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

import edgewise as ew
from bench_attribution import Clock, floor_passes, random_pairs
from edgewise.evaluate import CircuitEvaluator

warnings.filterwarnings("ignore", message="HookedTransformer is deprecated", category=DeprecationWarning)

SHAPES = {
    "gpt2-small": dict(n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257,
                       act_fn="gelu_new", normalization_type="LN", dtype=torch.float32),
    "gpt2-medium": dict(n_layers=24, d_model=1024, n_heads=16, d_head=64, d_mlp=4096, d_vocab=50257,
                        act_fn="gelu_new", normalization_type="LN", dtype=torch.float32),
    "llama-1b-bf16": dict(n_layers=16, d_model=2048, n_heads=32, d_head=64, n_key_value_heads=8, d_mlp=8192,
                          d_vocab=128256, act_fn="silu", gated_mlp=True, normalization_type="RMS",
                          positional_embedding_type="rotary", rotary_dim=64, rotary_base=500000,
                          final_rms=True, ungroup_grouped_query_attention=True, dtype=torch.bfloat16),
    "smoke": dict(n_layers=2, d_model=64, n_heads=4, d_head=16, d_mlp=256, d_vocab=500, act_fn="gelu_new",
                  normalization_type="LN", dtype=torch.float32),
}


def build(shape: str, device: str) -> HookedTransformer:
    cfg = HookedTransformerConfig(n_ctx=256, device=device, seed=0, **SHAPES[shape])
    return HookedTransformer(cfg).eval()


def plain_forward(model, pairs, batch_size: int) -> None:
    with torch.no_grad():
        for batch in pairs.batches(batch_size, model.cfg.device):
            model(batch.clean)


def measure(shape: str, device: str, n_pairs: int, n_tokens: int, batch_size: int, repeats: int) -> dict:
    model = build(shape, device)
    pairs = random_pairs(model, n_pairs, n_tokens)
    graph = ew.Graph.from_model(model)
    bs = batch_size
    clock = Clock(device, wall=True)
    fl, eap = clock.paired(lambda: floor_passes(model, pairs, batch_size=bs),
                           lambda: ew.attribute(model, pairs, "eap", batch_size=bs), repeats)
    fl5, ig = clock.paired(lambda: floor_passes(model, pairs, n_grad_passes=5, n_nograd=2, batch_size=bs),
                           lambda: ew.attribute(model, pairs, "eap-ig-inputs", ig_steps=5, batch_size=bs),
                           max(1, repeats // 2))
    scores = ew.attribute(model, pairs, "eap", batch_size=bs).scores
    keep = ew.Circuit.from_scores(graph, scores.float(), top_k=max(1, graph.n_edges // 10)).in_graph
    ev = CircuitEvaluator(model, pairs, batch_size=bs, cache=True)
    ev.metrics([keep])  # fills the cache: later calls cost one patched forward per batch
    plain, patched = clock.paired(lambda: plain_forward(model, pairs, bs), lambda: ev.metrics([keep]), repeats)
    del ev
    peak = float("nan")
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        ew.attribute(model, pairs, "eap", batch_size=bs)
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**30
    out = {"shape": shape, "edges": graph.n_edges, "eap/floor": eap / fl, "ig5/floor×5": ig / fl5,
           "patched/plain": patched / plain, "peak GiB": peak, "pairs/s": n_pairs / eap, "eap s": eap}
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def main(argv=None) -> int:
    sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shapes", default="gpt2-small,gpt2-medium,llama-1b-bf16")
    ap.add_argument("--smoke", action="store_true", help="a tiny shape, 8 pairs: checks the script itself")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.smoke:
        args.shapes, args.pairs, args.tokens, args.batch_size, args.repeats = "smoke", 8, 8, 4, 1
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    print(f"edgewise {ew.__version__}, torch {torch.__version__} (cuda {torch.version.cuda}), {name}; "
          f"{args.pairs} pairs × {args.tokens} tokens, batch {args.batch_size}, medians of {args.repeats}")
    cols = ["shape", "edges", "eap/floor", "ig5/floor×5", "patched/plain", "peak GiB", "pairs/s", "eap s"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for shape in args.shapes.split(","):
        try:
            r = measure(shape, device, args.pairs, args.tokens, args.batch_size, args.repeats)
        except Exception as e:  # noqa: BLE001 - one failing shape must not hide the others' figures
            print(f"| {shape} | failed: {type(e).__name__}: {str(e)[:200]} |")
            continue
        cells = [f"{r[c]:,}" if c == "edges" else (r[c] if isinstance(r[c], str) else f"{r[c]:.2f}") for c in cols]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
