"""Real architectures through every door: a tiny random checkpoint per architecture (written with
transformers' save_pretrained, see hf_checkpoints.py) loads as a folder and from a fake Hugging Face
cache with HF_HUB_OFFLINE=1; TransformerLens's log-probs equal the HF model's own; EAP scores equal
float64 finite differences, post-attention norms (Gemma-2, OLMo-2/3) and ungrouped GQA included.
"""
import json
import logging
import re
import socket

import pytest
import torch
from brute import edge_patched_metric, logit_diff_last
from hf_checkpoints import ARCHITECTURES, RECORDS, fake_cache_entry, write_checkpoint

import edgewise as ew
from edgewise import models

# TL warns about half-precision folding and logs each load; transformers draws a bar per load
logging.getLogger("root").setLevel(logging.ERROR)
# the engine's finite-difference checks: the 2026 families of issue 8, post-norm included
SCORED = ["gpt2", "gpt-neox", "llama", "qwen2", "mistral", "gemma-2", "olmo", "olmo-2", "olmo-3"]
# a TransformerLens name for each, under which the checkpoint is put into a fake HF cache
CACHE_NAMES = {"gpt2": ("gpt2", "openai-community/gpt2"), "gpt-neox": ("pythia-70m", "EleutherAI/pythia-70m"),
               "llama": ("meta-llama/Llama-3.2-1B",) * 2, "qwen2": ("Qwen/Qwen2.5-0.5B",) * 2,
               "mistral": ("mistralai/Mistral-7B-v0.1",) * 2, "gemma-2": ("google/gemma-2-2b",) * 2,
               "olmo": ("allenai/OLMo-1B-hf",) * 2, "olmo-2": ("allenai/OLMo-2-0425-1B",) * 2}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("checkpoints")
    return {kind: write_checkpoint(kind, root / kind) for kind in ARCHITECTURES}


def hf_log_probs(folder, ids):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return hf(ids).logits.log_softmax(-1)


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_log_probs_equal_the_hf_model(checkpoints, kind):
    """Same function as transformers' own model (centring the unembedding shifts logits by a constant)."""
    model = ew.load_model(str(checkpoints[kind]), device="cpu")
    ids = model.to_tokens(RECORDS[1]["clean"] + " Mary. The cat sat on the mat.", prepend_bos=False)
    assert ids.shape[1] > 6 + 2  # longer than the sliding windows (6), so local attention is exercised
    with torch.no_grad():
        ours = model(ids).log_softmax(-1)
    theirs = hf_log_probs(checkpoints[kind], ids)
    assert theirs.std() > 0.1  # a model far from uniform, so a wrong norm or scale would show
    torch.testing.assert_close(ours, theirs, atol=2e-4, rtol=0)


# ---------------------------------------------------------------- EAP against finite differences
def head_write(model, cache, layer, head):
    """Head output as the residual stream receives it: z_h W_O[h] in pre-norm blocks; under a norm
    after attention, that share of the norm's input, divided by the norm's scale in this run, times
    its gain:  w ⊙ (z_h W_O[h] + b_O / H) / σ   (read from TransformerLens's cache)."""
    result = cache[f"blocks.{layer}.attn.hook_result"][:, :, head]
    cfg = model.cfg
    if cfg.original_architecture in ("Olmo2ForCausalLM", "Olmo3ForCausalLM"):
        norm = f"blocks.{layer}.ln1"
    elif cfg.use_normalization_before_and_after:
        norm = f"blocks.{layer}.ln1_post"
    else:
        return result
    w = model.get_submodule(norm).w
    return (result + model.blocks[layer].attn.b_O / cfg.n_heads) / cache[f"{norm}.hook_scale"] * w


def source(model, cache, name):
    if name == "input":
        return cache["blocks.0.hook_resid_pre"]
    m = re.fullmatch(r"a(\d+)\.h(\d+)", name)
    if m:
        return head_write(model, cache, int(m[1]), int(m[2]))
    return cache[f"blocks.{name[1:]}.hook_mlp_out"]


def edges_of_every_kind(graph, per_kind=2):
    """Two edges of each (source kind, input kind) pair, plus both query heads of one key/value group."""
    kinds = {}
    for e in graph.edge_names:
        src, dst, qkv = graph.split_edge(e)
        kinds.setdefault((src[0], qkv or dst[0]), []).append(e)
    picked = [e for group in kinds.values() for e in group[:: max(1, len(group) // per_kind)][:per_kind]]
    return picked + [e for e in ("input->a1.h0<k>", "input->a1.h1<k>", "a0.h2->a1.h0<v>", "a0.h2->a1.h1<v>")
                     if e in graph.edge_position]


def reference_runs(model, pairs):
    """(clean cache, corrupted cache) per pair from TransformerLens's own split, ungrouped k/v inputs
    and per-head results: the plain-hooks reference the engine is checked against."""
    model.set_use_split_qkv_input(True)
    model.set_use_attn_result(True)
    model.set_use_hook_mlp_in(True)
    model.cfg.ungroup_grouped_query_attention = True
    with torch.no_grad():
        return [(model.run_with_cache(torch.tensor([c]))[1], model.run_with_cache(torch.tensor([x]))[1])
                for c, x in zip(pairs.clean, pairs.corrupted)]


@pytest.mark.parametrize("kind", SCORED)
def test_eap_equals_finite_differences(checkpoints, kind):
    model = ew.load_model(str(checkpoints[kind]), device="cpu", dtype=torch.float64)
    pairs = ew.PromptPairs.from_records(model, RECORDS)
    res = ew.attribute(model, pairs, method="eap", batch_size=2)
    score = dict(zip(res.edges, res.scores.tolist()))
    assert not model.cfg.ungroup_grouped_query_attention  # the engine restores TL's flag
    # the reference: TransformerLens's own ungrouped k/v inputs and per-head results, plain hooks
    runs = reference_runs(model, pairs)
    eps, checked = 1e-5, 0

    def read(cache, name):
        return source(model, cache, name)

    for edge in edges_of_every_kind(res.graph):
        fd = 0.0
        for i, (cc, xc) in enumerate(runs):
            args = (pairs.answer[i], pairs.wrong_answer[i])
            up = edge_patched_metric(model, pairs.clean[i], xc, cc, edge, eps, *args, source=read)
            down = edge_patched_metric(model, pairs.clean[i], xc, cc, edge, -eps, *args, source=read)
            fd += (up - down) / (2 * eps) / len(pairs)
        assert score[edge] == pytest.approx(fd, rel=1e-5, abs=1e-8), edge
        checked += abs(fd) > 1e-3
    assert checked >= 10  # most checked edges matter: the comparison is not 0 == 0


@pytest.mark.parametrize("kind", ["gemma-2", "olmo-2"])
def test_exact_equals_brute_force_patching_under_a_post_norm(checkpoints, kind):
    """`exact` patches each edge fully (one patched run per edge); the reference swaps that one head
    write, as defined above, into that one input slot with plain hooks."""
    model = ew.load_model(str(checkpoints[kind]), device="cpu", dtype=torch.float64)
    pairs = ew.PromptPairs.from_records(model, RECORDS)
    score = dict(zip(*(lambda r: (r.edges, r.scores.tolist()))(ew.attribute(model, pairs, method="exact"))))
    graph = ew.Graph.from_model(model)
    runs = reference_runs(model, pairs)
    with torch.no_grad():
        base = [logit_diff_last(model(torch.tensor([c])), a, w)
                for c, a, w in zip(pairs.clean, pairs.answer, pairs.wrong_answer)]
    for edge in [e for e in edges_of_every_kind(graph) if e.startswith("a")]:  # head sources
        change = sum(edge_patched_metric(model, pairs.clean[i], xc, cc, edge, 1.0, pairs.answer[i],
                                         pairs.wrong_answer[i], source=lambda c, n: source(model, c, n)) - base[i]
                     for i, (cc, xc) in enumerate(runs)) / len(pairs)
        assert score[edge] == pytest.approx(change, rel=1e-9, abs=1e-12), edge


@pytest.mark.parametrize("kind", ["gemma-2", "olmo-2"])
def test_post_norm_head_writes_add_up(checkpoints, kind):
    """Under a post-attention norm each head's write (norm scale frozen at its run) is additive: the
    heads sum to hook_attn_out, and patching every edge gives the corrupted run, none the clean run."""
    from edgewise.activations import ablated_acts, edge_hooks_enabled, new_acts, write_hooks
    from edgewise.patching import run_patched

    model = ew.load_model(str(checkpoints[kind]), device="cpu", dtype=torch.float64)
    pairs = ew.PromptPairs.from_records(model, RECORDS)
    graph = ew.Graph.from_model(model)
    batch = next(iter(pairs.batches(2, "cpu", False)))
    with edge_hooks_enabled(model, freeze=True):
        acts = new_acts(model, graph, batch)
        with torch.no_grad(), model.hooks(fwd_hooks=write_hooks(model, graph, acts)):
            _, cache = model.run_with_cache(batch.clean)
        for layer in range(graph.cfg.n_layers):
            total = acts[graph.head_sources(layer)].sum(0)
            torch.testing.assert_close(total, cache[f"blocks.{layer}.hook_attn_out"], atol=1e-12, rtol=0)
        abl, corrupted = ablated_acts(model, graph, batch, "resample")
        everything = run_patched(model, graph, batch, abl, graph.edge_mask.clone())
        nothing = run_patched(model, graph, batch, abl, torch.zeros_like(graph.edge_mask))
        clean = model(batch.clean)
    assert (corrupted - clean).abs().max() > 0.5
    torch.testing.assert_close(everything, corrupted, atol=1e-10, rtol=0)
    torch.testing.assert_close(nothing, clean, atol=1e-12, rtol=0)


# ---------------------------------------------------------------- the HF cache, offline
@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("kind", list(CACHE_NAMES))
def test_loads_by_name_from_the_hf_cache_offline(checkpoints, kind, tmp_path, monkeypatch, no_network):
    name, repo = CACHE_NAMES[kind]
    fake_cache_entry(tmp_path / "hf", repo, checkpoints[kind])
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = ew.load_model(name, device="cpu")
    ids = model.to_tokens(RECORDS[0]["clean"], prepend_bos=False)
    with torch.no_grad():
        ours = model(ids).log_softmax(-1)
    torch.testing.assert_close(ours, hf_log_probs(checkpoints[kind], ids), atol=2e-4, rtol=0)
    listed = {m["name"]: m for m in models.list_models(device="cpu")}[models.official_name(name)]
    assert listed["source"] == "cache" and not listed["download_needed"] and listed["size_bytes"] > 0
    assert listed["n_edges"] == ew.Graph.from_model(model).n_edges


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """A Qwen2 checkpoint in three safetensors shards and an index, as big models are saved."""
    return write_checkpoint("qwen2", tmp_path_factory.mktemp("sharded") / "qwen2", max_shard_size="20KB")


def test_half_downloaded_cache_entry_is_not_used(sharded, tmp_path, monkeypatch, no_network):
    snap = fake_cache_entry(tmp_path / "hf", "Qwen/Qwen2.5-0.5B", sharded)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert ew.load_model("Qwen/Qwen2.5-0.5B", device="cpu").cfg.n_key_value_heads == 2  # every shard there
    (snap / "model-00002-of-00003.safetensors").unlink()  # a download interrupted between shards
    with pytest.raises(RuntimeError, match="not in the local Hugging Face cache.*HF_HUB_OFFLINE"):
        ew.load_model("Qwen/Qwen2.5-0.5B", device="cpu")
    assert "Qwen/Qwen2.5-0.5B" not in {m["name"] for m in models.list_models(device="cpu")}


# ---------------------------------------------------------------- dtype, progress, refusals
def test_bfloat16_load_keeps_every_parameter_in_bfloat16(checkpoints):
    """Processing runs in float32, the model is then held in bfloat16 (MoE routers included)."""
    for kind in ("llama", "mixtral"):
        model = ew.load_model(str(checkpoints[kind]), device="cpu", dtype="bfloat16")
        assert {p.dtype for p in model.parameters()} == {torch.bfloat16}, kind
        ids = model.to_tokens(RECORDS[0]["clean"], prepend_bos=False)
        with torch.no_grad():
            ours = model(ids).float().log_softmax(-1)
        err = (ours - hf_log_probs(checkpoints[kind], ids)).abs().max()
        assert 1e-4 < err < 0.5, kind  # bfloat16 rounding, not float32 (which matches to 2e-4)


def test_progress_reports_reading_and_conversion(sharded):
    seen = []
    ew.load_model(str(sharded), device="cpu", progress=lambda f, d: seen.append((f, d)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert seen[0][1].startswith("reading weights (3 files,") and seen[0][1].endswith(" kB)")
    n_tensors = len(json.loads((sharded / "model.safetensors.index.json").read_text())["weight_map"])
    details = " ".join(d for _, d in seen)
    assert f"{n_tensors} of {n_tensors} tensors" in details and "converting" in details


def test_unsupported_architecture_names_it_and_the_list(checkpoints, tmp_path):
    import shutil

    folder = shutil.copytree(checkpoints["gpt2"], tmp_path / "bert")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "architectures": ["BertForMaskedLM"],
                                                    "model_type": "bert"}))
    with pytest.raises(ValueError, match=r"BertForMaskedLM is not supported: an encoder.*Supported: GPT-2"):
        ew.load_model(str(folder), device="cpu")
    (folder / "config.json").write_text(json.dumps({"architectures": ["MambaForCausalLM"], "model_type": "mamba-9"}))
    with pytest.raises(ValueError, match=r"MambaForCausalLM is not supported: TransformerLens 3.9's HookedTransformer "
                                         r"cannot hold it. Supported: GPT-2 \(GPT2LMHeadModel\)"):
        ew.load_model(str(folder), device="cpu")  # a model type transformers does not know either
    gqa_olmo2 = tmp_path / "olmo2-gqa"
    shutil.copytree(checkpoints["olmo-2"], gqa_olmo2)
    cfg = json.loads((gqa_olmo2 / "config.json").read_text())
    (gqa_olmo2 / "config.json").write_text(json.dumps({**cfg, "num_key_value_heads": 2}))
    with pytest.raises(ValueError, match="OLMo-2 with grouped-query attention"):
        ew.load_model(str(gqa_olmo2), device="cpu")
    quantized = shutil.copytree(checkpoints["llama"], tmp_path / "llama-gptq")
    cfg = json.loads((quantized / "config.json").read_text())
    (quantized / "config.json").write_text(json.dumps({**cfg, "quantization_config": {"quant_method": "gptq"}}))
    with pytest.raises(ValueError, match="gptq-quantized checkpoint"):
        ew.load_model(str(quantized), device="cpu")
