"""How much edgewise's checkpoint loading costs over transformers' own `from_pretrained`.

Writes a random checkpoint of a real model's shape (default: Qwen2.5-0.5B's widths, vocabulary and
grouped-query attention, 6 of its 24 layers) with save_pretrained into a temp folder, then times, in
one process and alternating: the floor, transformers' AutoModelForCausalLM.from_pretrained plus one
pass over every weight (safetensors maps the file lazily; the pass makes the read real), and
edgewise.load_model (reading, TransformerLens's conversion and weight processing: fold norms, centre
the unembedding, fold value biases, each of which copies the state dict). Prints the median of each,
their ratio, and the process's peak resident memory over the size of the loaded model.

    python bench/bench_loading.py [--layers 6] [--repeats 3] [--dtype float32]
"""
from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", default="float32")
    args = p.parse_args()

    import transformers as T

    import edgewise as ew
    from edgewise.models import parse_dtype
    from hf_checkpoints import write_tokenizer

    T.utils.logging.disable_progress_bar()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    dtype = parse_dtype(args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "qwen-shaped"
        write_tokenizer(folder)
        cfg = T.Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=args.layers,
                            num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                            max_position_embeddings=32768, tie_word_embeddings=True)
        T.AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
        size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        floor, ours = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            hf = T.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
            sum(float(p.float().sum()) for p in hf.parameters())
            floor.append(time.perf_counter() - t0)
            del hf
            gc.collect()
            t0 = time.perf_counter()
            model = ew.load_model(str(folder), device="cpu", dtype=dtype)
            ours.append(time.perf_counter() - t0)
            n_params = sum(p.numel() * p.element_size() for p in model.parameters())
            del model
            gc.collect()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    f, o = statistics.median(floor), statistics.median(ours)
    print(f"checkpoint: Qwen2.5-0.5B widths, {args.layers} layers, {size / 1e6:.0f} MB on disk, {args.dtype}")
    print(f"transformers from_pretrained (floor): median {f:.2f} s of {args.repeats}")
    print(f"edgewise load_model:                  median {o:.2f} s of {args.repeats}")
    print(f"ratio {o / f:.2f}")
    print(f"peak RSS of the process {peak / 1e9:.2f} GB = {peak / n_params:.1f} × the loaded model ({n_params / 1e9:.2f} GB)")


if __name__ == "__main__":
    main()
