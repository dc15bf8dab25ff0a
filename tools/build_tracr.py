"""Compile the two tracr tasks of the ACDC / EAP papers and save them as TransformerLens models.

    .venv-tools/bin/python tools/build_tracr.py      # needs jax + tracr-pypi (see tools/README.md)

  tracr-reverse     lib.make_reverse(tokens), vocab {1,2,3}, max_seq_len 5, BOS  (as ACDC)
  tracr-proportion  frac_prevs(tokens == "x"), vocab {w,x,y,z}, max_seq_len 5, BOS

For each: zoo/<name>/model.safetensors (state dict), config.json (HookedTransformerConfig kwargs),
vocab.json (tracr's encoders and residual labels), pairs.jsonl and task.json (metric, circuits).
The converted model is checked against tracr's own forward pass on every input of length 1..5.
"""
from __future__ import annotations

import itertools
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tracr.compiler import compiling, lib
from tracr.rasp import rasp
from transformer_lens import HookedTransformer, HookedTransformerConfig

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "backend" / "edgewise" / "zoo"
sys.path.insert(0, str(ROOT / "backend"))
BOS, MAX_LEN = "BOS", 5

# Circuits published for these tasks, in edgewise names. ACDC: acdc/tracr_task/utils.py
# get_tracr_*_edges (ACDC run, zero ablation; hook_embed and hook_pos_embed both map to `input`).
# auto-circuit: metrics/official_circuits/circuits/tracr/*_official.py (what resampling can see).
PUBLISHED = {
    "tracr-reverse": {
        "circuit_acdc": ["input->a0.h0<v>", "a0.h0->m0", "input->m0", "m0->m1", "input->m1", "m1->m2",
                         "m2->a3.h0<q>", "input->a3.h0<k>", "input->a3.h0<v>", "a3.h0->logits"],
        "circuit_official": ["input->a3.h0<v>", "a3.h0->logits"],
    },
    "tracr-proportion": {
        "circuit_acdc": ["input->m0", "input->a1.h0<q>", "input->a1.h0<k>", "m0->a1.h0<v>", "a1.h0->logits"],
        "circuit_official": ["input->m0", "m0->a1.h0<v>", "a1.h0->logits"],
    },
}


def compile_task(name: str):
    if name == "tracr-reverse":
        program, vocab = lib.make_reverse(rasp.tokens), {1, 2, 3}
    else:
        program, vocab = lib.make_frac_prevs(rasp.tokens == "x"), {"w", "x", "y", "z"}
    return program, compiling.compile_rasp_to_model(program, vocab=vocab, max_seq_len=MAX_LEN, compiler_bos=BOS)


def unembed_matrix(program, tracr_model) -> tuple[np.ndarray, dict | None]:
    """W_U [d_model, d_vocab_out]: the projection of the residual stream onto the output space,
    column j reading the residual direction labelled `<output sop>:<value decoded as j>`."""
    labels = tracr_model.residual_labels
    enc = getattr(tracr_model.output_encoder, "encoding_map", None)
    if enc is None:  # numerical output: one residual direction holds the value itself
        W_U = np.zeros((len(labels), 1), dtype=np.float32)
        W_U[labels.index(program.label), 0] = 1.0
        return W_U, None
    W_U = np.zeros((len(labels), len(enc)), dtype=np.float32)
    for value, j in enc.items():
        W_U[labels.index(f"{program.label}:{value}"), j] = 1.0
    return W_U, enc


def convert(name: str, program, tm) -> tuple[dict, dict, dict]:
    """tracr AssembledTransformerModel → (config kwargs, state dict, vocab)."""
    mc, p = tm.model_config, tm.params
    H, d_head = mc.num_heads, mc.key_size
    W_E = np.asarray(p["token_embed"]["embeddings"])
    W_U, out_enc = unembed_matrix(program, tm)
    cfg = dict(model_name=name, n_layers=mc.num_layers, n_heads=H, d_head=d_head, d_model=W_E.shape[1],
               d_mlp=mc.mlp_hidden_size, n_ctx=np.asarray(p["pos_embed"]["embeddings"]).shape[0],
               d_vocab=W_E.shape[0], d_vocab_out=W_U.shape[1], act_fn="relu", normalization_type=None,
               attention_dir="causal" if mc.causal else "bidirectional", default_prepend_bos=False,
               positional_embedding_type="standard", original_architecture="tracr")
    assert not mc.layer_norm
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    heads = lambda w: t(w).reshape(-1, H, d_head).permute(1, 0, 2).contiguous()  # [d_model, H*dh] → [H, d_model, dh]
    sd = {"embed.W_E": t(W_E), "pos_embed.W_pos": t(p["pos_embed"]["embeddings"]), "unembed.W_U": t(W_U),
          "unembed.b_U": torch.zeros(W_U.shape[1])}
    for L in range(mc.num_layers):
        a, m = f"transformer/layer_{L}/attn/", f"transformer/layer_{L}/mlp/"
        for tl, tr in (("Q", "query"), ("K", "key"), ("V", "value")):
            sd[f"blocks.{L}.attn.W_{tl}"] = heads(p[a + tr]["w"])
            sd[f"blocks.{L}.attn.b_{tl}"] = t(p[a + tr]["b"]).reshape(H, d_head)
        sd[f"blocks.{L}.attn.W_O"] = t(p[a + "linear"]["w"]).reshape(H, d_head, -1)
        sd[f"blocks.{L}.attn.b_O"] = t(p[a + "linear"]["b"])
        sd[f"blocks.{L}.mlp.W_in"] = t(p[m + "linear_1"]["w"])
        sd[f"blocks.{L}.mlp.b_in"] = t(p[m + "linear_1"]["b"])
        sd[f"blocks.{L}.mlp.W_out"] = t(p[m + "linear_2"]["w"])
        sd[f"blocks.{L}.mlp.b_out"] = t(p[m + "linear_2"]["b"])
    vocab = {"input": {str(k): v for k, v in tm.input_encoder.encoding_map.items()},
             "output": None if out_enc is None else {str(k): v for k, v in out_enc.items()},
             "output_type": "numerical" if out_enc is None else "categorical",
             "bos": BOS, "pad": "compiler_pad", "output_sop": program.label,
             "residual_labels": list(tm.residual_labels)}
    return cfg, sd, vocab


def load_tl(cfg: dict, sd: dict) -> HookedTransformer:
    model = HookedTransformer(HookedTransformerConfig(**cfg, device="cpu"))
    state = model.state_dict()
    state.update(sd)
    model.load_state_dict(state)
    return model.eval()


def check_all_inputs(tm, model: HookedTransformer, vocab: dict, values) -> int:
    """TL model == tracr on every input: same final residual stream, same decoded outputs."""
    enc, n = vocab["input"], 0
    out_dec = None if vocab["output"] is None else {v: k for k, v in vocab["output"].items()}
    for length in range(1, MAX_LEN + 1):
        for seq in itertools.product(sorted(values), repeat=length):
            out = tm.apply([BOS, *seq])
            ids = torch.tensor([[enc[BOS]] + [enc[str(s)] for s in seq]])
            logits, cache = model.run_with_cache(ids)
            resid = cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"][0].numpy()
            assert np.allclose(resid, np.asarray(out.transformer_output[0]), atol=1e-4), (seq, "residual stream")
            if out_dec is None:
                got = logits[0, 1:, 0].tolist()
                assert np.allclose(got, out.decoded[1:], atol=1e-4), (seq, got, out.decoded)
            else:
                got = [out_dec[i] for i in logits[0, 1:].argmax(-1).tolist()]
                assert got == [str(v) for v in out.decoded[1:]], (seq, got, out.decoded)
            n += 1
    return n


def make_pairs(name: str, vocab: dict, values, seed: int = 0) -> list[dict]:
    """Full-length (BOS + 5 tokens) clean/corrupted pairs of token ids, corrupted drawn at random.
    reverse: every one of the 3^5 inputs once, answers = the output at the last position (whose
    input token, the first one, is made to differ). proportion: 200 inputs, no answers (task metric)."""
    rng, enc = random.Random(seed), vocab["input"]
    ids = lambda seq: [enc[BOS]] + [enc[str(s)] for s in seq]  # noqa: E731
    values = sorted(values)
    records = []
    if name == "tracr-reverse":
        out = vocab["output"]
        for clean in itertools.product(values, repeat=MAX_LEN):
            while True:
                corrupted = tuple(rng.choice(values) for _ in range(MAX_LEN))
                if corrupted[0] != clean[0]:
                    break
            records.append({"clean": ids(clean), "corrupted": ids(corrupted),
                            "answer": out[str(clean[0])], "wrong_answer": out[str(corrupted[0])]})
    else:
        frac = lambda s: [s[: i + 1].count("x") / (i + 1) for i in range(len(s))]  # noqa: E731
        cleans = rng.sample(list(itertools.product(values, repeat=MAX_LEN)), 200)
        for clean in cleans:
            while True:
                corrupted = tuple(rng.choice(values) for _ in range(MAX_LEN))
                if frac(corrupted) != frac(clean):
                    break
            records.append({"clean": ids(clean), "corrupted": ids(corrupted)})
    return records


DESCRIPTIONS = {
    "tracr-reverse": "tracr-compiled RASP program reversing a sequence over {1,2,3} (max length 5, BOS first); "
                     "output at position p is the input token at position n+1-p",
    "tracr-proportion": "tracr-compiled RASP program frac_prevs(tokens == 'x') over {w,x,y,z} (max length 5, BOS "
                        "first); output (one residual dimension) at position p is the fraction of x in positions 1..p",
}
METRIC = {"tracr-reverse": "tracr_reverse", "tracr-proportion": "tracr_proportion"}


def build(name: str) -> None:
    t0 = time.time()
    program, tm = compile_task(name)
    values = {"tracr-reverse": {1, 2, 3}, "tracr-proportion": {"w", "x", "y", "z"}}[name]
    cfg, sd, vocab = convert(name, program, tm)
    model = load_tl(cfg, sd)
    n_checked = check_all_inputs(tm, model, vocab, values)

    from edgewise.graph import Graph
    from edgewise.tasks import weight_circuit
    circuit = weight_circuit(model)
    out = ZOO / name
    out.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(out / "model.safetensors"), metadata={"source": "tracr-pypi 1.0.0, tools/build_tracr.py"})
    (out / "model.safetensors").chmod(0o644)
    (out / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    (out / "vocab.json").write_text(json.dumps(vocab, indent=1) + "\n")
    pairs = make_pairs(name, vocab, values)
    (out / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
    published = PUBLISHED[name]
    for key, edges in published.items():
        Graph.from_model(model).mask_from_edges(edges)  # validates the names
        extra, missing = sorted(set(edges) - set(circuit)), sorted(set(circuit) - set(edges))
        print(f"  {key}: {len(edges)} edges; not in the weight circuit: {extra}; weight-circuit edges it lacks: {missing}")
    task = {"name": name, "model": name, "metric": METRIC[name], "description": DESCRIPTIONS[name],
            "circuit": circuit, "circuit_source": "weights: u→v when what u writes overlaps what v reads",
            **published,
            "circuit_acdc_source": "ACDC (Conmy et al. 2023), acdc/tracr_task/utils.py, zero ablation",
            "circuit_official_source": "auto-circuit official circuits: the edges resample ablation can see"}
    (out / "task.json").write_text(json.dumps(task, indent=1) + "\n")
    g = Graph.from_model(model)
    print(f"{name}: {cfg['n_layers']} layers × {cfg['n_heads']} head, d_model {cfg['d_model']}, {g.n_edges} edges, "
          f"weight circuit {len(circuit)} edges, {n_checked} inputs match tracr, {len(pairs)} pairs "
          f"({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    torch.set_num_threads(1)  # 1,700 tiny forward passes: threads only add sync cost on a busy CPU
    for task_name in sys.argv[1:] or ["tracr-reverse", "tracr-proportion"]:
        build(task_name)
