"""TransformerLens's own-format models (NeelNanda/…) from a fake local Hugging Face cache, offline.

Each repo is written the way TL 3.9 reads it: a config.json in Neel's terms and model_final.pth (a
HookedTransformer state dict), plus the tokenizer repo its config names. The reference is a
HookedTransformer built directly from that config with those weights, unprocessed (no TL loading
code): log-probs must agree (from_pretrained's folding and centring leave them unchanged).
"""
import json
import socket

import pytest
import torch
from hf_checkpoints import SENTENCES, fake_cache_entry, write_tokenizer
from transformer_lens import HookedTransformer, HookedTransformerConfig

import edgewise as ew
from edgewise import hub, models

TOKENIZER_REPO = "NeelNanda/gpt-neox-tokenizer-digits"  # what Neel's C4-code models name
# TL name → (official repo, Neel config fields that differ from the base below)
CASES = {
    "gelu-2l": ("NeelNanda/GELU_2L512W_C4_Code", {}),
    "solu-1l": ("NeelNanda/SoLU_1L512W_C4_Code", {"n_layers": 1, "act_fn": "solu_ln"}),  # LN inside the MLP
    "attn-only-demo": ("NeelNanda/Attn-Only-2L512W-Shortformer-6B-big-lr",  # shortformer: nothing folded
                       {"attn_only": True, "shortformer_pos": True}),
}
BASE = {"d_model": 16, "n_layers": 2, "d_mlp": 64, "d_head": 4, "n_heads": 4, "n_ctx": 32,
        "tokenizer_name": TOKENIZER_REPO, "act_fn": "gelu", "attn_only": False, "normalization": "LN",
        "shortformer_pos": False}


def reference(neel: dict) -> HookedTransformer:
    """A float64 HookedTransformer from Neel's config fields, read here by hand."""
    return HookedTransformer(HookedTransformerConfig(
        d_model=neel["d_model"], n_layers=neel["n_layers"], d_mlp=neel["d_mlp"], d_head=neel["d_head"],
        n_heads=neel["n_heads"], n_ctx=neel["n_ctx"], d_vocab=neel["d_vocab"], act_fn=neel["act_fn"],
        attn_only=neel["attn_only"], normalization_type=neel["normalization"], dtype=torch.float64,
        positional_embedding_type="shortformer" if neel["shortformer_pos"] else "standard", device="cpu"))


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """name → (official repo, its files' folder, Neel config, float64 reference), and the tokenizer folder."""
    root = tmp_path_factory.mktemp("tl_native")
    tok = root / "tokenizer"
    vocab = len(write_tokenizer(tok))
    out = {}
    for i, (name, (repo, changes)) in enumerate(CASES.items()):
        neel = {**BASE, **changes, "d_vocab": vocab}
        torch.manual_seed(i)
        ref = reference(neel)
        with torch.no_grad():  # biases and LN gains away from 0 and 1, so folding and centring all matter
            for key, p in ref.named_parameters():
                p.normal_(1.0 if ".ln" in key and key.endswith(".w") else 0.0, 0.3 if p.dim() > 1 else 0.2)
                p.copy_(p.float())  # the file holds float32, as Neel's do; the reference uses the same values
        folder = root / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(neel))
        torch.save({k: v.float() for k, v in ref.state_dict().items()}, folder / "model_final.pth")
        out[name] = (repo, folder, neel, ref.eval())
    return out, tok


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "_reachable", {"at": -1e9, "value": False, "key": None})  # no stale answer
    return tmp_path / "hf"


@pytest.fixture
def no_network(monkeypatch):
    """Every connection fails as with no network (an OSError, which hub.hub_reachable reads as no hub);
    socket.create_connection and HTTP clients all connect through socket.connect."""
    def refuse(*args, **kwargs):
        raise OSError("test: no network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("name", list(CASES))
def test_loads_from_the_cache_offline_and_matches_a_directly_built_model(repos, name, cache, no_network):
    (repo, folder, neel, ref), tok = repos[0][name], repos[1]
    fake_cache_entry(cache, repo, folder)
    fake_cache_entry(cache, TOKENIZER_REPO, tok)
    seen = []
    model = ew.load_model(name, device="cpu", dtype=torch.float64, progress=lambda f, d: seen.append(f))
    assert model.cfg.model_name == repo.split("/")[1] and seen[-1] == 1.0
    # the tokenizer is the cached repo's: BOS, then the trained BPE's own ids
    from tokenizers import Tokenizer
    ids = Tokenizer.from_file(str(tok / "tokenizer.json")).encode(SENTENCES[0]).ids
    tokens = model.to_tokens(SENTENCES[0])
    assert tokens[0].tolist() == [model.tokenizer.bos_token_id] + ids
    tokens = tokens[:, :neel["n_ctx"]]
    with torch.no_grad():
        ours, theirs = model(tokens).log_softmax(-1), ref(tokens).log_softmax(-1)
    # TL 3.9 folds and centres in float32 even for a float64 model (weight_processing.py casts the
    # state dict to float32), so agreement is to float32 rounding: 2.7e-7 measured; a wrong fold is O(1)
    torch.testing.assert_close(ours, theirs, atol=2e-6, rtol=0)
    # the processing from_pretrained applies: LayerNorm folded (LNPre) unless shortformer
    assert model.cfg.normalization_type == ("LN" if neel["shortformer_pos"] else "LNPre")


def test_cache_is_used_first_even_when_not_set_offline(repos, cache, monkeypatch, no_network):
    """Without HF_HUB_OFFLINE a fully cached model still loads with no connection attempted."""
    repo, folder, _, ref = repos[0]["gelu-2l"]
    fake_cache_entry(cache, repo, folder)
    fake_cache_entry(cache, TOKENIZER_REPO, repos[1])
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    model = ew.load_model(repo, device="cpu")  # the official repo id works as well as the TL alias
    tokens = torch.tensor([[0, 5, 9, 2, 7]])
    with torch.no_grad():
        torch.testing.assert_close(model(tokens).log_softmax(-1).double(), ref(tokens).log_softmax(-1),
                                   atol=1e-4, rtol=0)


@pytest.mark.parametrize("remove, named", [
    ("tokenizer", f"{TOKENIZER_REPO}: the tokenizer"),
    ("model_final.pth", "NeelNanda/GELU_2L512W_C4_Code: the weights (a file ending in final.pth"),
    ("config.json", "NeelNanda/GELU_2L512W_C4_Code: config.json"),
    ("repo", "NeelNanda/GELU_2L512W_C4_Code: not in the cache"),
])
def test_a_missing_part_is_named_with_the_cache_dir(repos, cache, monkeypatch, no_network, remove, named):
    repo, folder, _, _ = repos[0]["gelu-2l"]
    if remove != "repo":
        snap = fake_cache_entry(cache, repo, folder)
        if remove != "tokenizer":
            (snap / remove).unlink()
    if remove != "tokenizer":
        fake_cache_entry(cache, TOKENIZER_REPO, repos[1])
    with pytest.raises(RuntimeError) as err:
        ew.load_model("gelu-2l", device="cpu")
    message = str(err.value)
    assert named in message and str(cache / "hub") in message and "HF_HUB_OFFLINE is set" in message
    monkeypatch.delenv("HF_HUB_OFFLINE")  # not offline, but no connection: the same error, no download tried
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(RuntimeError, match="no connection"):
        ew.load_model("gelu-2l", device="cpu")


def test_listed_under_its_cache_source(repos, cache, no_network):
    repo, folder, neel, _ = repos[0]["attn-only-demo"]
    fake_cache_entry(cache, repo, folder)
    listed = {m["name"]: m for m in models.list_models(device="cpu")}
    assert TOKENIZER_REPO not in listed  # a tokenizer repo is not a model
    entry = listed[repo]
    assert entry["source"] == "cache" and entry["download_needed"] and TOKENIZER_REPO in entry["description"]
    fake_cache_entry(cache, TOKENIZER_REPO, repos[1])
    entry = {m["name"]: m for m in models.list_models(device="cpu")}[repo]
    assert not entry["download_needed"] and entry["size_bytes"] == (folder / "model_final.pth").stat().st_size
    model = ew.load_model(entry["name"], device="cpu")
    assert [entry[k] for k in ("n_layers", "n_heads", "d_model")] == [neel[k] for k in ("n_layers", "n_heads", "d_model")]
    assert entry["n_edges"] == ew.Graph.from_model(model).n_edges  # attention-only: no MLP nodes


@pytest.mark.filterwarnings("ignore:HookedTransformer.from_pretrained is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", list(CASES))
def test_same_model_as_from_pretrained_when_the_hub_lists_the_files(repos, name, cache, monkeypatch, no_network):
    """TL's own from_pretrained, with only its one hub request (the repo's file list) answered here,
    builds the same config and the same processed weights as the offline load."""
    from huggingface_hub import HfApi

    repo, folder, _, _ = repos[0][name]
    snap = fake_cache_entry(cache, repo, folder)
    fake_cache_entry(cache, TOKENIZER_REPO, repos[1])
    ours = ew.load_model(name, device="cpu")
    monkeypatch.setattr(HfApi, "list_repo_files", lambda self, repo_id, **kw: sorted(p.name for p in snap.iterdir()))
    with models.quiet():
        theirs = HookedTransformer.from_pretrained(repo, device="cpu", tokenizer=ours.tokenizer,
                                                   cache_dir=str(cache / "hub"), local_files_only=True)
    assert ours.cfg.to_dict() == theirs.cfg.to_dict()
    mine, tl = ours.state_dict(), theirs.state_dict()
    assert mine.keys() == tl.keys() and all(torch.equal(mine[k], tl[k]) for k in mine)
