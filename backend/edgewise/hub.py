"""The Hugging Face hub and its local cache: is the hub reachable, which snapshots are already
cached (complete: config and every weight shard), and a download that reports bytes.

The cache folder is read from the environment at each call (HF_HUB_CACHE, else HF_HOME/hub, else
~/.cache/huggingface/hub), so a changed HF_HOME takes effect without re-importing huggingface_hub.
Layout: <cache>/models--<org>--<name>/refs/main holds a commit; snapshots/<commit>/ holds the files.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

_TRUE = ("1", "true", "yes", "on")
_reachable: dict = {"at": -1e9, "value": False, "key": None}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "tokenizer.model", "added_tokens.json", "spiece.model")
# Hub repos moved into organisations after TransformerLens named them; a cache may hold either.
MOVED = {n: f"openai-community/{n}" for n in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")}
MOVED["distilgpt2"] = "distilbert/distilgpt2"


def offline() -> bool:
    return any(os.environ.get(k, "").lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = 2.0, max_age: float = 60.0) -> bool:
    """False at once when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set; otherwise whether the hub's
    port opens within `timeout` seconds (the answer is kept for `max_age` seconds)."""
    if offline():
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    now = time.monotonic()
    if _reachable["key"] == host and now - _reachable["at"] < max_age:
        return _reachable["value"]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        value = True
    except OSError:
        value = False
    _reachable.update(at=now, value=value, key=host)
    return value


def cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


def repo_folder(repo_id: str) -> Path:
    return cache_dir() / ("models--" + repo_id.replace("/", "--"))


def cached_repos() -> list[tuple[str, Path]]:
    """(repo id, its cache folder) for every model repo in the cache."""
    root = cache_dir()
    if not root.is_dir():
        return []
    return sorted((p.name[len("models--"):].replace("--", "/"), p) for p in root.glob("models--*") if p.is_dir())


def snapshot(repo_id: str) -> Path | None:
    """The snapshot refs/main points to (else the newest snapshot), or None when nothing is cached."""
    folder = repo_folder(repo_id)
    ref = folder / "refs" / "main"
    if ref.is_file():
        snap = folder / "snapshots" / ref.read_text().strip()
        if snap.is_dir():
            return snap
    snaps = sorted((folder / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return snaps[-1] if snaps else None


def weight_files(folder: Path) -> list[Path] | None:
    """The weight files a checkpoint folder needs (safetensors preferred, then PyTorch .bin), or None
    when a needed file is missing (e.g. a shard of a half-finished download, or a dangling cache link)."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (folder / index).exists():
            try:
                shards = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError):
                return None
            files = [folder / s for s in shards]
            return files if all(f.exists() for f in files) else None
        if (folder / single).exists():
            return [folder / single]
    return None


def complete(folder: Path | None) -> bool:
    return folder is not None and (folder / "config.json").exists() and weight_files(folder) is not None


def size_bytes(folder: Path) -> int | None:
    files = weight_files(folder)
    return sum(f.stat().st_size for f in files) if files else None  # stat follows the cache's links


class _ByteCounter:
    """A stand-in for tqdm that huggingface_hub updates with downloaded byte counts."""

    def __init__(self, on_bytes):
        self.on_bytes = on_bytes

    def __call__(self, *args, **kwargs):  # used as tqdm_class: "instantiating" returns this counter
        self.update(kwargs.get("initial") or 0)  # bytes a resumed download already has
        return self

    def update(self, n=1):
        self.on_bytes(int(n or 0))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __getattr__(self, name):  # close, refresh, set_postfix_str, update_transfer, ...: nothing to do
        return lambda *a, **k: None


def download(repo_id: str, progress=None) -> Path:
    """Download config, tokenizer and weights of `repo_id` into the cache; progress(fraction, detail) by bytes."""
    from huggingface_hub import HfApi, hf_hub_download

    info = HfApi().model_info(repo_id, files_metadata=True)
    files = {s.rfilename: (s.size or 0) for s in info.siblings or [] if "/" not in s.rfilename}
    weights = [f for f in files if f.endswith(".safetensors") or f == "model.safetensors.index.json"]
    if not any(f.endswith(".safetensors") for f in weights):
        weights = [f for f in files if f.startswith("pytorch_model") and f.endswith((".bin", ".bin.index.json"))]
    wanted = [f for f in files if f in ("config.json", "generation_config.json") or f in TOKENIZER_FILES] + weights
    if "config.json" not in wanted or not weights:
        raise ValueError(f"{repo_id} on the hub has no config.json and weights: not a transformers checkpoint")
    total, done = sum(files[f] for f in wanted) or 1, [0]

    def on_bytes(n):
        done[0] += n
        if progress:
            progress(min(done[0] / total, 1.0), f"downloading {repo_id}: {done[0] / 1e6:,.0f} of {total / 1e6:,.0f} MB")

    path = None
    for name in wanted:
        path = hf_hub_download(repo_id, name, revision=info.sha, cache_dir=cache_dir(), tqdm_class=_ByteCounter(on_bytes))
    ref = repo_folder(repo_id) / "refs" / "main"  # downloads by commit write no ref; later offline loads look for it
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(info.sha)
    return Path(path).parent
