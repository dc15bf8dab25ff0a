"""Shapes from configs alone (no weights): MIB's published edge counts, and TransformerLens's own
tables of official sizes reproduced by converting the models' config.json fields.

The configs below are the published models' config.json values (hidden sizes, heads, key/value
heads, head_dim, windows, rope), written as transformers config objects.
"""
import logging

import pytest

from edgewise import arch
from edgewise.graph import Graph

logging.getLogger("root").setLevel(logging.ERROR)


def configs():
    import transformers as T

    llama31 = dict(rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 8192})
    return {
        "gpt2": T.GPT2Config(architectures=["GPT2LMHeadModel"]),
        "Qwen/Qwen2.5-0.5B": T.Qwen2Config(
            hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
            num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, architectures=["Qwen2ForCausalLM"]),
        "google/gemma-2-2b": T.Gemma2Config(
            hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
            num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256, sliding_window=4096, vocab_size=256000,
            architectures=["Gemma2ForCausalLM"]),
        "google/gemma-2-9b": T.Gemma2Config(
            hidden_size=3584, intermediate_size=14336, num_hidden_layers=42, num_attention_heads=16,
            num_key_value_heads=8, head_dim=256, query_pre_attn_scalar=256, sliding_window=4096, vocab_size=256000,
            architectures=["Gemma2ForCausalLM"]),
        "google/gemma-2-27b": T.Gemma2Config(
            hidden_size=4608, intermediate_size=36864, num_hidden_layers=46, num_attention_heads=32,
            num_key_value_heads=16, head_dim=128, query_pre_attn_scalar=144, sliding_window=4096, vocab_size=256000,
            architectures=["Gemma2ForCausalLM"]),
        "google/gemma-3-1b-pt": T.Gemma3TextConfig(
            hidden_size=1152, intermediate_size=6912, num_hidden_layers=26, num_attention_heads=4,
            num_key_value_heads=1, head_dim=256, query_pre_attn_scalar=256, sliding_window=512, vocab_size=262144,
            max_position_embeddings=32768, sliding_window_pattern=6, architectures=["Gemma3ForCausalLM"],
            rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}),
        "meta-llama/Llama-3.1-8B": T.LlamaConfig(
            hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
            num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072, rms_norm_eps=1e-5,
            architectures=["LlamaForCausalLM"], **llama31),
        "meta-llama/Llama-3.2-1B": T.LlamaConfig(
            hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
            num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072, rms_norm_eps=1e-5,
            architectures=["LlamaForCausalLM"], **{**llama31, "rope_parameters": {
                **llama31["rope_parameters"], "factor": 32.0}}),
    }


@pytest.mark.parametrize("name, n_edges", [("gpt2", 32_491), ("Qwen/Qwen2.5-0.5B", 179_749),
                                           ("google/gemma-2-2b", 74_218), ("meta-llama/Llama-3.1-8B", 1_592_881)])
def test_edge_counts_equal_mibs(name, n_edges):
    """MIB counts grouped-query attention ungrouped: q, k and v inputs per query head."""
    shape = arch.graph_config(configs()[name])
    assert shape.n_edges == n_edges and Graph(shape).n_edges == n_edges  # closed form and the mask agree


@pytest.mark.parametrize("parallel, attn_only", [(False, False), (True, False), (False, True)])
def test_edge_count_without_the_mask_equals_the_mask(parallel, attn_only):
    from edgewise.graph import GraphConfig

    for layers, heads in [(1, 1), (3, 2), (5, 7)]:
        shape = GraphConfig(layers, heads, 8, parallel, attn_only)
        assert shape.n_edges == Graph(shape).n_edges


@pytest.mark.parametrize("name", ["google/gemma-2-2b", "google/gemma-2-9b", "google/gemma-2-27b",
                                  "google/gemma-3-1b-pt", "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.2-1B"])
def test_config_json_conversion_reproduces_transformer_lens_tables(name):
    """TL 3.9 knows these official sizes only from hard-coded tables (keyed by name); a local copy
    of the checkpoint must convert from its config.json to the same model. n_ctx is TL's memory cap."""
    import transformer_lens.loading_from_pretrained as loading

    table = loading.convert_hf_model_config(name)  # name-keyed branches: no network
    ours = arch.tl_config_dict(configs()[name])
    d_head = table["d_head"]
    defaults = {"rotary_dim": d_head, "attn_scale": d_head ** 0.5}  # what TL fills in when a table omits them
    for key, value in table.items():
        if key in ("n_ctx", "tokenizer_name", "quantization_method", "initializer_range"):
            continue
        assert ours.get(key, defaults.get(key)) == value, key
    for key in ("rotary_dim", "attn_scale"):
        assert ours.get(key, defaults[key]) == table.get(key, defaults[key]), key
