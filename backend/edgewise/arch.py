"""Architectures: which Hugging Face checkpoints edgewise loads, how a checkpoint's own config
becomes a TransformerLens 3.9 config, and where an architecture's heads read and write the
residual stream (the one place the engine asks about architectures).

Config conversion. TransformerLens 3.9 builds most configs from the HF config, but
  - picks its branch by substrings of the *name* first: a folder called `my-llama` or `gemma-ft`
    never reads its config.json ('NoneType' object has no attribute 'hidden_size');
  - has no config branch at all for Gemma 1/2/3 and OLMo 1/2, only tables of the official sizes;
  - reads fields transformers 5 moved or dropped: GPT-2's `n_ctx`, Phi's `partial_rotary_factor`.
So Gemma, Gemma-2, Gemma-3 (text), OLMo 1/2 and Phi are converted here, with the keys of TL's own tables,
and every other architecture goes through TL's branch, fed a copy of the config in a neutrally
named folder; the two gaps above are filled after it.

Heads. Pre-norm blocks give head h the residual write z_h W_O[h] and read q/k/v through ln1.
Two kinds of block put a norm *after* attention, so the heads' sum is normalized as a whole:
  - Gemma-2/3 (`use_normalization_before_and_after`): attn_out = ln1_post(Σ_h z_h W_O[h] + b_O);
  - OLMo-2/3 (TL's POST_NORM_ARCHITECTURES): attn_out = ln1(Σ_h z_h W_O[h] + b_O), and q/k/v read
    the raw residual stream (ln1 is *not* the heads' input norm there).
For both, head h's write is defined with the norm's scale frozen at the run it belongs to:
    write_h = w ⊙ (z_h W_O[h] + b_O / H) / σ,   σ = RMS of the norm's input in that run
so the writes are additive and sum exactly to hook_attn_out in every run (clean, corrupted,
patched): patching every edge reproduces the ablated run, patching none the clean one.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

# Decoder-only architectures TransformerLens 3.9's HookedTransformer holds, with its weight converters.
SUPPORTED = {
    "GPT2LMHeadModel": "GPT-2", "GPTNeoForCausalLM": "GPT-Neo", "GPTJForCausalLM": "GPT-J",
    "GPTNeoXForCausalLM": "GPT-NeoX / Pythia", "OPTForCausalLM": "OPT", "BloomForCausalLM": "BLOOM",
    "LlamaForCausalLM": "Llama", "MistralForCausalLM": "Mistral", "MixtralForCausalLM": "Mixtral",
    "Qwen2ForCausalLM": "Qwen2 / Qwen2.5", "Qwen3ForCausalLM": "Qwen3", "PhiForCausalLM": "Phi",
    "Phi3ForCausalLM": "Phi-3", "GemmaForCausalLM": "Gemma", "Gemma2ForCausalLM": "Gemma-2",
    "Gemma3ForCausalLM": "Gemma-3 (text)", "OlmoForCausalLM": "OLMo", "Olmo2ForCausalLM": "OLMo-2",
    "Olmo3ForCausalLM": "OLMo-3", "OlmoeForCausalLM": "OLMoE",
}
# What TL 3.9 has but edgewise refuses, and why.
REFUSED = {
    "QWenLMHeadModel": "needs the checkpoint's own Python code (trust_remote_code), which edgewise never runs",
    "GPT2LMHeadCustomModel": "needs the checkpoint's own Python code (trust_remote_code), which edgewise never runs",
    "BertForMaskedLM": "an encoder (masked LM), not a decoder; edgewise's graph is causal",
    "T5ForConditionalGeneration": "an encoder-decoder; edgewise's graph is a single decoder stack",
    "Gemma3ForConditionalGeneration": "multimodal; load the text-only Gemma3ForCausalLM instead",
}
POST_NORM = {"Olmo2ForCausalLM", "Olmo3ForCausalLM"}  # = TL 3.9's POST_NORM_ARCHITECTURES
# Grouped-query attention these cannot hold: TL's converters split k/v by n_heads (OLMo 1/2), or a k-norm
# spans all key heads at once, so k cannot be computed per query head (OLMo-3, OLMoE; TL norms full vectors)
_NO_GQA = {
    "OlmoForCausalLM": "TransformerLens 3.9's weight converter splits keys and values by query head",
    "Olmo2ForCausalLM": "TransformerLens 3.9's weight converter splits keys and values by query head",
    "Olmo3ForCausalLM": "its k-norm spans all key heads at once, so keys cannot be ungrouped per query head",
    "OlmoeForCausalLM": "its k-norm spans all key heads at once, so keys cannot be ungrouped per query head",
}


class UnsupportedArchitecture(ValueError):
    pass


def architecture(hf_config) -> str:
    archs = getattr(hf_config, "architectures", None) or []
    if not archs:
        raise UnsupportedArchitecture(f"the config (model_type {getattr(hf_config, 'model_type', '?')!r}) names no "
                                      "architecture (config.json has no \"architectures\" list)")
    return archs[0]


def check_supported(arch: str) -> None:
    if arch in SUPPORTED:
        return
    why = REFUSED.get(arch, "TransformerLens 3.9's HookedTransformer cannot hold it")
    raise UnsupportedArchitecture(f"architecture {arch} is not supported: {why}. Supported: "
                                  + ", ".join(f"{v} ({k})" for k, v in SUPPORTED.items()))


def tl_config_dict(hf_config) -> dict:
    """HookedTransformerConfig fields (before device, dtype and weight processing) for a
    transformers config object; UnsupportedArchitecture names the architecture and the list."""
    arch = architecture(hf_config)
    check_supported(arch)
    quantized = getattr(hf_config, "quantization_config", None)
    if quantized:
        method = quantized.get("quant_method", "?") if isinstance(quantized, dict) else type(quantized).__name__
        raise UnsupportedArchitecture(f"a {method}-quantized checkpoint: TransformerLens 3.9's converters read "
                                      "weights directly, so only unquantized (float) checkpoints load; save a "
                                      "dequantized copy")
    n_kv = getattr(hf_config, "num_key_value_heads", None)
    if arch in _NO_GQA and n_kv not in (None, hf_config.num_attention_heads):
        raise UnsupportedArchitecture(f"{SUPPORTED[arch]} with grouped-query attention ({n_kv} key/value heads for "
                                      f"{hf_config.num_attention_heads} query heads): {_NO_GQA[arch]}")
    if arch == "PhiForCausalLM" and getattr(hf_config, "qk_layernorm", False):
        raise UnsupportedArchitecture("Phi with qk_layernorm: TransformerLens 3.9's Phi converter drops the q/k norms")
    if arch in _OWN:
        cfg = _OWN[arch](hf_config)
    else:
        cfg = _through_transformer_lens(hf_config)
    cfg["original_architecture"] = arch
    return cfg


def graph_config(hf_config):
    """The edge graph's shape of a transformers config (no weights): GQA counts as ungrouped."""
    from .graph import GraphConfig

    d = tl_config_dict(hf_config)
    return GraphConfig(d["n_layers"], d["n_heads"], d["d_model"], bool(d.get("parallel_attn_mlp")),
                       bool(d.get("attn_only")))


def _through_transformer_lens(hf_config) -> dict:
    import transformer_lens.loading_from_pretrained as loading

    data = hf_config.to_dict()
    if data["architectures"][0] == "GPT2LMHeadModel":  # transformers 5 dropped n_ctx (= n_positions)
        data.setdefault("n_ctx", data.get("n_positions", 1024))
    with tempfile.TemporaryDirectory(prefix="edgewise-config-") as tmp:
        folder = Path(tmp) / "checkpoint"
        if any(w in str(folder).lower() for w in ("llama", "gemma", "wav2vec2", "tinystories")):
            raise RuntimeError(f"the temporary folder {folder} contains a model-family name that TransformerLens "
                               "3.9 matches before reading the config; set TMPDIR to a neutral folder")
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(data))
        cfg = loading.convert_hf_model_config(str(folder))
    cfg.pop("tokenizer_name", None)
    return cfg


def _rope(hf_config, layer_type: str | None = None) -> dict:
    """The rope parameters: transformers 5 `rope_parameters` (per layer type for Gemma-3), else the v4 fields."""
    params = getattr(hf_config, "rope_parameters", None) or {}
    if layer_type and isinstance(params.get(layer_type), dict):
        params = params[layer_type]
    out = dict(getattr(hf_config, "rope_scaling", None) or {})
    out.update(params)
    if "rope_theta" not in out and getattr(hf_config, "rope_theta", None) is not None:
        out["rope_theta"] = hf_config.rope_theta
    return out


def _attn_types(hf_config) -> list[str]:
    types = getattr(hf_config, "layer_types", None) or ["full_attention"] * hf_config.num_hidden_layers
    return ["local" if t == "sliding_attention" else "global" for t in types]


def _gemma(hf_config) -> dict:
    c = hf_config
    d_head = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return {
        "d_model": c.hidden_size, "d_head": d_head, "n_heads": c.num_attention_heads,
        "n_key_value_heads": c.num_key_value_heads, "d_mlp": c.intermediate_size, "n_layers": c.num_hidden_layers,
        "n_ctx": c.max_position_embeddings, "eps": c.rms_norm_eps, "d_vocab": c.vocab_size,
        "act_fn": getattr(c, "hidden_activation", None) or c.hidden_act, "initializer_range": c.initializer_range,
        "normalization_type": "RMS", "positional_embedding_type": "rotary", "rotary_dim": d_head,
        "rotary_base": _rope(c).get("rope_theta", 10000.0), "use_attn_scale": True,
        # HF scales scores by query_pre_attn_scalar^-1/2 (Gemma-2 27B: 144, not d_head)
        "attn_scale": float(getattr(c, "query_pre_attn_scalar", None) or d_head) ** 0.5,
        "gated_mlp": True, "final_rms": True,
    }


def _gemma2(hf_config) -> dict:
    c = hf_config
    cfg = _gemma(c)
    cfg.update(use_normalization_before_and_after=True, attn_types=_attn_types(c),
               use_local_attn=bool(c.sliding_window) and "local" in _attn_types(c), window_size=c.sliding_window,
               attn_scores_soft_cap=c.attn_logit_softcapping or -1.0,
               output_logits_soft_cap=c.final_logit_softcapping or -1.0)
    return cfg


def _gemma3(hf_config) -> dict:
    c = hf_config
    cfg = _gemma2(c)
    full, local = _rope(c, "full_attention"), _rope(c, "sliding_attention")
    cfg.update(use_qk_norm=True, rotary_base=full.get("rope_theta", 1_000_000.0),
               rotary_base_local=local.get("rope_theta", getattr(c, "rope_local_base_freq", 10000.0)))
    if full.get("rope_type") == "linear" and full.get("factor", 1.0) != 1.0:
        cfg["rotary_scaling_factor"] = float(full["factor"])
    return cfg


def _olmo(hf_config) -> dict:
    c = hf_config
    return {
        "d_model": c.hidden_size, "d_head": c.hidden_size // c.num_attention_heads, "n_heads": c.num_attention_heads,
        "d_mlp": c.intermediate_size, "n_layers": c.num_hidden_layers, "n_ctx": c.max_position_embeddings,
        "eps": 1e-5, "d_vocab": c.vocab_size, "act_fn": c.hidden_act, "initializer_range": c.initializer_range,
        "normalization_type": "LN", "positional_embedding_type": "rotary",
        "rotary_base": _rope(c).get("rope_theta", 10000.0), "attn_types": ["global"] * c.num_hidden_layers,
        "gated_mlp": True, "clip_qkv": getattr(c, "clip_qkv", None),
    }


def _olmo2(hf_config) -> dict:
    cfg = _olmo(hf_config)
    cfg.update(normalization_type="RMS", eps=hf_config.rms_norm_eps)
    cfg.pop("clip_qkv")
    return cfg


def _phi(hf_config) -> dict:
    """TL's Phi branch reads partial_rotary_factor, which transformers 5 moved into rope_parameters."""
    c = hf_config
    d_head = c.hidden_size // c.num_attention_heads
    return {
        "d_model": c.hidden_size, "d_head": d_head, "n_heads": c.num_attention_heads, "d_mlp": c.intermediate_size,
        "n_layers": c.num_hidden_layers, "n_ctx": c.max_position_embeddings, "eps": c.layer_norm_eps,
        "d_vocab": c.vocab_size, "act_fn": c.hidden_act, "initializer_range": c.initializer_range,
        "normalization_type": "LN", "positional_embedding_type": "rotary", "use_attn_scale": True,
        "rotary_base": _rope(c).get("rope_theta", 10000.0), "parallel_attn_mlp": True, "default_prepend_bos": False,
        "rotary_dim": round(_rope(c).get("partial_rotary_factor", getattr(c, "partial_rotary_factor", 1.0)) * d_head),
    }


_OWN = {"PhiForCausalLM": _phi, "GemmaForCausalLM": _gemma, "Gemma2ForCausalLM": _gemma2, "Gemma3ForCausalLM": _gemma3,
        "OlmoForCausalLM": _olmo, "Olmo2ForCausalLM": _olmo2}


# ---------------------------------------------------------------- heads in the engine
def head_input_norm(model, layer: int) -> torch.nn.Module:
    """The norm between the residual stream and the q/k/v projections of `layer`'s heads
    (identity for post-norm blocks, whose ln1 normalizes the attention *output*)."""
    if getattr(model.cfg, "original_architecture", None) in POST_NORM:
        return torch.nn.Identity()
    return model.blocks[layer].ln1


def post_attention_norm(model, layer: int) -> tuple[str, torch.nn.Module] | None:
    """(hook name prefix, module) of a norm applied to the sum of `layer`'s heads, or None."""
    block = model.blocks[layer]
    if getattr(model.cfg, "original_architecture", None) in POST_NORM:
        return f"blocks.{layer}.ln1", block.ln1
    if getattr(model.cfg, "use_normalization_before_and_after", False):
        return f"blocks.{layer}.ln1_post", block.ln1_post
    return None


def normed_head_writes(model, hook_name: str, rows, acts: torch.Tensor, sign: float):
    """Forward hooks writing the heads of a block with a post-attention norm into acts[rows]
    ([H, B, P, d]; sign +1 stores, −1 subtracts), or None for any other source hook. With σ the
    norm's scale in this run (module doc):  write_h = w ⊙ (z_h W_O[h] + b_O / H) / σ."""
    if not hook_name.endswith("attn.hook_z"):
        return None
    layer = int(hook_name.split(".")[1])
    found = post_attention_norm(model, layer)
    if found is None:
        return None
    prefix, norm = found
    if type(norm).__name__ != "RMSNorm":
        raise NotImplementedError(f"block {layer}: a {type(norm).__name__} after attention; only RMSNorm is "
                                  "split into per-head writes")
    attn, state = model.blocks[layer].attn, {}

    def keep_z(z, hook):  # [B, P, H, d_head]
        state["z"] = z.detach()

    def write(scale, hook):  # scale: σ [B, P, 1], computed after the heads are summed
        z = state.pop("z")
        H, e = attn.W_O.shape[:2]
        heads = torch.bmm(z.permute(2, 0, 1, 3).reshape(H, -1, e).to(attn.W_O.dtype), attn.W_O.detach())
        heads += attn.b_O.detach() / H
        heads = (heads / scale.detach().reshape(1, -1, 1)).to(acts.dtype) * norm.w.detach()
        out = acts[rows].view(H, heads.shape[1], -1)
        if sign > 0:
            out.copy_(heads)
        else:
            out -= heads

    return [(hook_name, keep_z), (f"{prefix}.hook_scale", write)]
