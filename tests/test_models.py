"""load_model / list_models: the zoo, hub names offline, a local Hugging Face checkpoint, the device choice."""
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

import edgewise as ew
from edgewise import models


def test_list_models_reads_configs_only():
    listed = {m["name"]: m for m in models.list_models()}
    assert {"tracr-reverse", "tracr-proportion", "toy-induction", "toy-ioi"} <= set(listed)
    rev = listed["tracr-reverse"]
    assert (rev["n_layers"], rev["n_heads"], rev["n_edges"], rev["source"]) == (4, 1, 77, "zoo")
    assert listed["tracr-proportion"]["n_edges"] == 23
    assert "tracr_reverse" in rev["metrics"] and "logit_diff" not in rev["metrics"]
    assert "logit_diff" in listed["toy-ioi"]["metrics"]
    for m in listed.values():
        assert m["description"] and m["d_model"] > 0


def test_zoo_models_load_float32_in_eval_mode():
    for name in models.zoo_names():
        model = ew.load_model(name, device="cpu")
        assert model.W_E.dtype == torch.float32 and not model.training, name
        assert ew.Graph.from_model(model).n_edges == next(m["n_edges"] for m in models.list_models()
                                                          if m["name"] == name)


def test_device_env_overrides(monkeypatch):
    monkeypatch.setenv("EDGEWISE_DEVICE", "cpu")
    assert models.default_device() == "cpu"
    assert ew.load_model("tracr-proportion").cfg.device == "cpu"
    monkeypatch.delenv("EDGEWISE_DEVICE")
    assert models.default_device() == ("cuda" if torch.cuda.is_available() else "cpu")


def test_hub_name_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    with pytest.raises(RuntimeError, match="unreachable"):
        ew.load_model("gpt2")
    assert time.time() - t0 < 5


def test_unknown_name_lists_the_zoo():
    with pytest.raises(ValueError, match="tracr-reverse"):
        ew.load_model("no-such-model-anywhere")


def write_tiny_gpt2(path):
    """A 2-layer GPT-2 checkpoint with a word-level tokenizer, as save_pretrained writes them."""
    from tokenizers import Tokenizer, models as tok_models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["<|endoftext|>", "<unk>", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "."]
    tok = Tokenizer(tok_models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>", pad_token="<|endoftext|>")
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_positions=16, n_ctx=16, n_embd=16, n_layer=2, n_head=2))
    hf.save_pretrained(path)
    fast.save_pretrained(path)
    return hf.eval()


def test_local_hf_checkpoint(tmp_path):
    hf = write_tiny_gpt2(tmp_path)
    model = ew.load_model(str(tmp_path), device="cpu")
    assert (model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_model) == (2, 2, 16)
    ids = model.to_tokens("the cat sat on the mat", prepend_bos=False)
    assert ids.shape == (1, 6)
    with torch.no_grad():
        ours = model(ids).log_softmax(-1)
        theirs = hf(ids).logits.log_softmax(-1)
    assert torch.allclose(ours, theirs, atol=1e-4)  # same model up to TL's weight processing
    pairs = ew.PromptPairs.from_records(model, [{"clean": "the cat sat on the", "corrupted": "the dog ran on the",
                                                 "answer": " mat", "wrong_answer": " dog"}])
    assert len(pairs) == 1 and ew.Graph.from_model(model).n_edges > 0
