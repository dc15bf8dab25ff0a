"""Tiny random Hugging Face checkpoints, one per architecture, written as a user's would be:
`save_pretrained` of a transformers model plus a byte-level BPE tokenizer trained with `tokenizers`
on a few sentences (a byte-level BPE loads as itself under every architecture's AutoTokenizer in
transformers 5; a word-level one is reinterpreted by Qwen2's and tokenizes to nothing).

Weights are drawn wider than transformers' init (std 0.3, norm gains 1 ± 0.2) so that norms,
gates, soft-caps and rope all matter to the output.
"""
from __future__ import annotations

from pathlib import Path

import torch

SENTENCES = ["When Mary and John went to the store, John gave a drink to Mary.",
             "The cat sat on the mat. The dog sat on the rug.",
             "A quick brown fox jumps over the lazy dog, and the dog ran to the park."]
# pairs every tokenizer below reads as equal-length prompts with single-token answers
RECORDS = [{"clean": "The cat sat on the", "corrupted": "The dog sat on the", "answer": " mat", "wrong_answer": " rug"},
           {"clean": "When Mary and John went to the store, John gave a drink to",
            "corrupted": "When Mary and John went to the store, Mary gave a drink to",
            "answer": " Mary", "wrong_answer": " John"}]
_SMALL = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64)
GQA = dict(_SMALL, num_key_value_heads=2)  # two query heads share each key/value head
MHA = dict(_SMALL, num_key_value_heads=4)


def _configs(V: int) -> dict:
    import transformers as T

    return {
        "gpt2": lambda: T.GPT2Config(vocab_size=V, n_positions=64, n_embd=16, n_layer=2, n_head=2),
        "gpt-neox": lambda: T.GPTNeoXConfig(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                            num_attention_heads=2, max_position_embeddings=64, rotary_pct=0.5),
        "llama": lambda: T.LlamaConfig(vocab_size=V, **GQA),
        "llama-3-rope": lambda: T.LlamaConfig(vocab_size=V, rope_parameters={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16, "rope_theta": 500000.0}, **GQA),
        "qwen2": lambda: T.Qwen2Config(vocab_size=V, **GQA),
        "mistral": lambda: T.MistralConfig(vocab_size=V, sliding_window=6, **GQA),
        "gemma-2": lambda: T.Gemma2Config(vocab_size=V, head_dim=4, sliding_window=6, query_pre_attn_scalar=8,
                                          **GQA),
        "olmo": lambda: T.OlmoConfig(vocab_size=V, clip_qkv=2.0, **MHA),
        "olmo-2": lambda: T.Olmo2Config(vocab_size=V, **MHA),
        "olmo-3": lambda: T.Olmo3Config(vocab_size=V, sliding_window=6, **MHA),
        # loaded and checked against HF's log-probs only
        "gpt-neo": lambda: T.GPTNeoConfig(vocab_size=V, hidden_size=16, num_layers=2, num_heads=2, window_size=6,
                                          attention_types=[[["global", "local"], 1]], max_position_embeddings=64),
        "gpt-j": lambda: T.GPTJConfig(vocab_size=V, n_embd=16, n_layer=2, n_head=2, rotary_dim=4, n_positions=64),
        "opt": lambda: T.OPTConfig(vocab_size=V, hidden_size=16, ffn_dim=32, num_hidden_layers=2, num_attention_heads=2,
                                   max_position_embeddings=64, word_embed_proj_dim=16),
        "bloom": lambda: T.BloomConfig(vocab_size=V, hidden_size=16, n_layer=2, n_head=2),
        "phi": lambda: T.PhiConfig(vocab_size=V, **MHA),
        "phi-3": lambda: T.Phi3Config(vocab_size=V, pad_token_id=0, **GQA),
        "qwen3": lambda: T.Qwen3Config(vocab_size=V, head_dim=4, **GQA),
        "gemma": lambda: T.GemmaConfig(vocab_size=V, head_dim=4, **GQA),
        "gemma-3": lambda: T.Gemma3TextConfig(vocab_size=V, head_dim=4, sliding_window=6, query_pre_attn_scalar=8,
                                              **GQA),
        "mixtral": lambda: T.MixtralConfig(vocab_size=V, num_local_experts=3, num_experts_per_tok=2, **GQA),
        "olmoe": lambda: T.OlmoeConfig(vocab_size=V, num_experts=3, num_experts_per_tok=2, **MHA),
    }


ARCHITECTURES = list(_configs(1))


def write_tokenizer(folder: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(SENTENCES, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                           initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    fast.save_pretrained(folder)
    return fast


def write_checkpoint(kind: str, folder: Path, seed: int = 0, max_shard_size: str | None = None) -> Path:
    """A random `kind` checkpoint (see ARCHITECTURES) with its tokenizer, saved into `folder`
    (in several safetensors shards plus an index when `max_shard_size` is given, e.g. "20KB")."""
    import transformers as T

    folder.mkdir(parents=True, exist_ok=True)
    vocab = len(write_tokenizer(folder))
    torch.manual_seed(seed)
    model = T.AutoModelForCausalLM.from_config(_configs(vocab)[kind]())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
            else:  # norm gains around 1 (Gemma stores gain − 1, so around 0 there), biases around 0
                p.normal_(1.0 if "norm" in name or ".ln" in name else 0.0, 0.2)
    model.save_pretrained(folder, **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    return folder


def fake_cache_entry(hf_home: Path, repo_id: str, checkpoint: Path, commit: str = "0" * 40) -> Path:
    """Copy a checkpoint into `hf_home`/hub the way huggingface_hub lays a download out:
    models--<org>--<name>/snapshots/<commit>/ (files linked to blobs/) and refs/main."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    for f in checkpoint.iterdir():
        blob = repo / "blobs" / f"{f.name}.blob"
        blob.write_bytes(f.read_bytes())
        (snap / f.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snap
