"""load_model / list_models: the zoo, hub names offline, local checkpoints and their listing (symlinks
included), the hub listing, dtypes, the CLI's --dtype, and a checkpoint through the web API."""
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from hf_checkpoints import RECORDS, write_checkpoint

import edgewise as ew
from edgewise import cli, hub, models


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
        assert m["size_bytes"] > 0 and not m["download_needed"] and m["dtypes"] == models.offered_dtypes()


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


def test_hub_name_fails_fast_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    with pytest.raises(RuntimeError, match=r"not in the local Hugging Face cache .* unreachable \(HF_HUB_OFFLINE"):
        ew.load_model("gpt2")
    assert time.time() - t0 < 5
    with pytest.raises(ValueError, match="no such directory"):
        ew.load_model(str(tmp_path / "not-there"))


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


def test_dtypes_by_name_and_device():
    assert models.parse_dtype("bf16") is torch.bfloat16 and models.parse_dtype(None) is torch.float32
    with pytest.raises(ValueError, match="unknown dtype 'int8'; choose from float32, bfloat16, float16"):
        models.parse_dtype("int8")
    assert models.offered_dtypes("cpu") == ["float32"]
    assert models.offered_dtypes("cuda:0") == ["float32", "bfloat16", "float16"]


# ---------------------------------------------------------------- listing
@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return write_checkpoint("llama", tmp_path_factory.mktemp("ckpt") / "llama")


def test_local_models_lists_checkpoints_and_never_leaves_the_allowed_dir(tmp_path, llama_dir):
    import shutil

    allowed, outside = tmp_path / "allowed", tmp_path / "outside-secret"
    shutil.copytree(llama_dir, allowed / "tiny-llama")
    shutil.copytree(llama_dir, outside / "ckpt")
    (allowed / "escape").symlink_to(outside / "ckpt")          # leads outside: not listed, not followed
    (allowed / "alias").symlink_to(allowed / "tiny-llama")     # stays inside: listed as its target
    (allowed / "cfg-escape").mkdir()
    (allowed / "cfg-escape" / "config.json").symlink_to(outside / "ckpt" / "config.json")
    (allowed / "encoder").mkdir()
    (allowed / "encoder" / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"],
                                                               "model_type": "bert", "num_hidden_layers": 2}))
    (allowed / "no-config").mkdir()
    listed = models.local_models([allowed], device="cpu")
    assert "outside-secret" not in json.dumps(listed)
    by_name = {m["name"]: m for m in listed}
    assert set(by_name) == {str((allowed / "tiny-llama").resolve()), str((allowed / "encoder").resolve())}
    llama = by_name[str((allowed / "tiny-llama").resolve())]
    model = ew.load_model(llama["name"], device="cpu")
    assert (llama["source"], llama["n_layers"], llama["n_heads"], llama["d_model"]) == ("local", 2, 4, 16)
    assert llama["n_edges"] == ew.Graph.from_model(model).n_edges  # GQA counted ungrouped
    assert llama["size_bytes"] == (llama_dir / "model.safetensors").stat().st_size and llama["dtypes"] == ["float32"]
    encoder = by_name[str((allowed / "encoder").resolve())]
    assert encoder["n_edges"] is None and encoder["n_layers"] == 2
    assert "cannot be loaded" in encoder["description"] and "BertForMaskedLM" in encoder["description"]


def test_hub_models_are_offered_only_when_the_hub_is_reachable(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert not [m for m in models.list_models() if m["source"] == "hub"]  # HF_HUB_OFFLINE is set in tests
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=2.0: True)
    offered = {m["name"]: m for m in models.list_models() if m["source"] == "hub"}
    assert offered["gpt2"]["n_edges"] == 32_491 and offered["gpt2"]["download_needed"]
    assert offered["Qwen/Qwen2.5-0.5B"]["n_edges"] == 179_749  # MIB's count (test_architectures_shapes)
    assert all(models.official_name(name) for name in offered)  # each loads by its TransformerLens name


# ---------------------------------------------------------------- the CLI and the web API
def test_cli_dtype_reaches_the_loader(tmp_path, llama_dir, monkeypatch, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    seen = []
    real = models.load_model
    monkeypatch.setattr(models, "load_model", lambda *a, **k: seen.append(k["dtype"]) or real(*a, **k))
    out = tmp_path / "c.json"
    assert cli.main(["attribute", "--model", str(llama_dir), "--pairs", str(pairs), "--dtype", "bfloat16",
                     "--top-k", "5", "--out", str(out), "--no-faithfulness", "--device", "cpu"]) == 0
    assert seen == ["bfloat16"] and sum(e["in_graph"] for e in json.loads(out.read_text())["edges"].values()) == 5
    assert "loading llama" in capsys.readouterr().err  # the loading progress bar
    with pytest.raises(SystemExit):
        cli.main(["attribute", "--model", str(llama_dir), "--pairs", str(pairs), "--dtype", "int8", "--out", str(out)])


def test_a_checkpoint_through_the_web_api(tmp_path, llama_dir):
    """Listed from EDGEWISE_MODEL_DIRS, runs, and its circuit exports (the default catalog, real loading)."""
    import shutil

    from api_support import wait
    from fastapi.testclient import TestClient

    from edgewise.server import Settings, create_app

    shutil.copytree(llama_dir, tmp_path / "models" / "tiny-llama")
    settings = Settings(data_dir=tmp_path / "data", device="cpu", model_dirs=(tmp_path / "models",),
                        frontend_dir=tmp_path / "frontend", curve_points=3, allowed_hosts=("testserver",))
    with TestClient(create_app(settings)) as client:
        listed = [m for m in client.get("/api/models").json() if m["source"] == "local"]
        assert [m["name"] for m in listed] == [str((tmp_path / "models" / "tiny-llama").resolve())]
        name = listed[0]["name"]
        r = client.post("/api/datasets", json={"model": name, "pairs": RECORDS})
        assert r.status_code == 201, r.text
        r = client.post("/api/runs", json={"model": name, "dataset_id": r.json()["id"], "method": "eap",
                                           "metric": "logit_diff", "batch_size": 2})
        assert r.status_code == 202, r.text
        run = wait(client, r.json()["id"], timeout=60)
        assert run["status"] == "done" and run["n_edges"] == listed[0]["n_edges"], run
        circuit = client.get(f"/api/runs/{run['id']}/circuit", params={"top_k": 7}).json()
        assert sum(e["in_graph"] for e in circuit["edges"].values()) == 7 and circuit["cfg"]["n_heads"] == 4
        model = ew.load_model(name, device="cpu")
        want = ew.attribute(model, ew.PromptPairs.from_records(model, RECORDS), batch_size=2)
        got = {e: v["score"] for e, v in circuit["edges"].items()}
        assert got == pytest.approx(dict(zip(want.edges, want.scores.tolist())), rel=1e-4, abs=1e-6)


def test_download_fetches_only_what_loading_needs_and_reports_bytes(tmp_path, llama_dir, monkeypatch):
    """The hub replaced by a fake (tests never touch the network): safetensors over .bin, no subfolders,
    progress by bytes, refs/main written so the next load finds the snapshot offline."""
    import shutil
    from types import SimpleNamespace

    import huggingface_hub

    files = {f.name: f.stat().st_size for f in llama_dir.iterdir()}
    siblings = [SimpleNamespace(rfilename=n, size=s) for n, s in files.items()]
    siblings += [SimpleNamespace(rfilename="pytorch_model.bin", size=10**9),
                 SimpleNamespace(rfilename="onnx/model.onnx", size=10**9)]
    fetched = []

    def fake_download(repo_id, filename, revision, cache_dir, tqdm_class):
        assert filename in files, f"{filename} is not needed"
        fetched.append(filename)
        snap = cache_dir / ("models--" + repo_id.replace("/", "--")) / "snapshots" / revision
        snap.mkdir(parents=True, exist_ok=True)
        bar = tqdm_class(total=files[filename], initial=0)
        with bar:
            for _ in range(2):
                bar.update(files[filename] // 2)
        return str(shutil.copy(llama_dir / filename, snap / filename))

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info",
                        lambda self, repo_id, files_metadata: SimpleNamespace(sha="c0ffee", siblings=siblings))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=2.0: True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    seen = []
    model = ew.load_model("Qwen/Qwen2.5-0.5B", device="cpu", progress=lambda f, d: seen.append((f, d)))
    assert sorted(fetched) == sorted(files) and model.cfg.n_layers == 2
    downloading = [f for f, d in seen if d.startswith("downloading Qwen/Qwen2.5-0.5B")]
    assert downloading[-1] == pytest.approx(0.5, abs=0.01) and [f for f, _ in seen] == sorted(f for f, _ in seen)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=2.0: False)
    fetched.clear()
    assert ew.load_model("Qwen/Qwen2.5-0.5B", device="cpu").cfg.n_layers == 2 and not fetched  # from the cache
