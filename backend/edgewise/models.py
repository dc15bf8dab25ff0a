"""load_model(): bundled zoo models, Hugging Face checkpoints (a local folder, the local HF cache,
or the hub), and the list of models that can be loaded here.

    load_model("tracr-reverse")                   # zoo: weights in the package, no network
    load_model("/ckpts/my-llama")                 # a folder save_pretrained wrote (any supported architecture)
    load_model("gpt2")                            # a TransformerLens name or a hub repo id: from the local
    load_model("Qwen/Qwen2.5-0.5B", dtype="bfloat16")  # HF cache if it holds it, else downloaded (hub reachable)

A checkpoint folder becomes a HookedTransformer in checkpoints.py (its own config.json, through
arch.py); a name is looked up in the local HF cache (hub.py) before any download. TransformerLens's
own-format names (NeelNanda/…: attn-only-2l, gelu-2l, solu-1l, …) load through tl_native.py.

HF_HUB_OFFLINE=1 is honoured: the cache is used and the network never tried. Device: the `device`
argument, else $EDGEWISE_DEVICE, else cuda when available, else cpu. progress(fraction, detail)
reports the stage "loading model": bytes downloaded, tensors read, conversion.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from . import hub, tl_native
from .checkpoints import checkpoint_summary, default_device, human_size, load_checkpoint, parse_dtype, quiet
from .graph import Graph, GraphConfig
from .zoo import ZOO_DIR

DESCRIPTIONS = {
    "tracr-reverse": "tracr-compiled: reverses a sequence over {1,2,3} (4 layers, 1 head, no LayerNorm); "
                     "circuit known from the weights",
    "tracr-proportion": "tracr-compiled: fraction of previous 'x' tokens over {w,x,y,z} (2 layers, 1 head); "
                        "circuit known from the weights",
    "toy-induction": "2-layer attention-only model trained to complete repeated random segments "
                     "(previous-token head → induction heads)",
    "toy-ioi": "4-layer transformer trained on indirect-object sentences (both name orders, ABC pairs), "
               "word-level tokenizer; role circuit from attention and path patching",
    "interp-lookup": "3-layer transformer trained with strict interchange-intervention training (SIIT): "
                     "key-value lookup plus offset, its 7-edge circuit known by training",
}
TL_NATIVE = tl_native.PREFIXES  # TransformerLens's own (not transformers) format


def offered_dtypes(device: str | None = None) -> list[str]:
    """float32 everywhere; bfloat16 and float16 on a GPU (on a CPU they are slower and lose precision)."""
    return ["float32", "bfloat16", "float16"] if str(device or default_device()).startswith("cuda") else ["float32"]


def zoo_names() -> list[str]:
    return sorted(p.parent.name for p in ZOO_DIR.glob("*/config.json"))


def load_model(name: str, device: str | None = None, dtype=None, progress=None) -> HookedTransformer:
    """A HookedTransformer in eval mode, float32 unless `dtype` says otherwise (a torch dtype or its name)."""
    device, dtype = device or default_device(), parse_dtype(dtype)
    report = progress or (lambda fraction, detail: None)
    with quiet():
        if name in zoo_names():
            from .zoo import metrics  # noqa: F401  (registers the zoo's task metrics, e.g. tracr_reverse)
            return _load_zoo(name, device, dtype)
        path = Path(name).expanduser()
        if path.is_dir():
            return load_checkpoint(path, device, dtype, report)
        if name.startswith(("/", "./", "../", "~")):
            raise ValueError(f"no such directory {name!r}")
        return _load_named(name, device, dtype, report)


def _load_zoo(name: str, device: str, dtype: torch.dtype) -> HookedTransformer:
    from safetensors.torch import load_file

    folder = ZOO_DIR / name
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("tokenizer_prepends_bos", None)  # set by set_tokenizer below
    model = HookedTransformer(HookedTransformerConfig(**cfg, device=device, dtype=dtype))
    state = model.state_dict()
    loaded = load_file(str(folder / "model.safetensors"))
    missing = sorted(k for k, _ in model.named_parameters() if k not in loaded)
    unknown = sorted(k for k in loaded if k not in state)
    if missing or unknown:
        raise ValueError(f"zoo model {name!r}: weights do not fit its config.json (missing {missing[:3]}, "
                         f"unexpected {unknown[:3]})")
    state.update({k: v.to(dtype) for k, v in loaded.items()})
    model.load_state_dict(state)
    if (folder / "tokenizer.json").exists():
        model.set_tokenizer(zoo_tokenizer(name), default_padding_side="right")
    return model.eval()  # already on cfg.device


def zoo_tokenizer(name: str):
    """The word-level tokenizer shipped beside a zoo model, as a transformers fast tokenizer."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(ZOO_DIR / name), local_files_only=True)


# ---------------------------------------------------------------- names: the HF cache, then the hub
def official_name(name: str) -> str | None:
    import transformer_lens.loading_from_pretrained as loading

    try:
        return loading.get_official_model_name(name)
    except ValueError:
        return None


MOVED = hub.MOVED  # hub repos that moved into organisations (gpt2 → openai-community/gpt2)


def _repo_ids(name: str, official: str | None) -> list[str]:
    """Hub repos (and so cache folders) a name may live in: its official repo and where that moved."""
    if official is None:
        return [name] if name.count("/") == 1 else []
    return [official] + ([MOVED[official]] if official in MOVED else [])


def _tl_name(repo: str) -> str:
    """The TransformerLens name of a hub repo, or the repo id when TransformerLens has none."""
    moved_from = {v.lower(): k for k, v in MOVED.items()}
    return moved_from.get(repo.lower()) or official_name(repo) or repo


def _load_named(name: str, device: str, dtype: torch.dtype, report) -> HookedTransformer:
    official = official_name(name)
    if official is None and name.count("/") != 1:
        raise ValueError(f"unknown model {name!r}: not a bundled model ({', '.join(zoo_names())}), not a local "
                         "directory, not a TransformerLens pretrained name and not a hub repo id (org/name)")
    if tl_native.is_native(official):
        return tl_native.load(name, official, device, dtype, report)
    for repo in _repo_ids(name, official):
        snap = hub.snapshot(repo)
        if hub.complete(snap):
            return load_checkpoint(snap, device, dtype, report, name=(official or repo).split("/")[-1])
    repo = official or name
    if not hub.hub_reachable():
        why = "HF_HUB_OFFLINE is set" if hub.offline() else "no connection"
        raise RuntimeError(f"model {name!r} ({repo}) is not in the local Hugging Face cache ({hub.cache_dir()}) and "
                           f"the hub is unreachable ({why}); bundled models load offline: {', '.join(zoo_names())}")
    try:
        snap = hub.download(repo, progress=lambda f, d: report(0.5 * f, d))
    except Exception as e:  # noqa: BLE001 - gated, missing or private repos: say which and why
        raise RuntimeError(f"model {name!r}: downloading {repo} from the hub failed: {type(e).__name__}: {e}") from None
    return load_checkpoint(snap, device, dtype, lambda f, d: report(0.5 + 0.5 * f, d),
                           name=repo.split("/")[-1])


def hub_reachable(timeout: float = 2.0) -> bool:
    return hub.hub_reachable(timeout)


# ---------------------------------------------------------------- what can be loaded here
# Shapes of a few models researchers start with, offered (source "hub") when the hub is reachable:
# name → (n_layers, n_heads, d_model, parallel attention/MLP). Edge counts follow from the shape.
HUB_SUGGESTIONS = {
    "gpt2": (12, 12, 768, False), "gpt2-medium": (24, 16, 1024, False),
    "EleutherAI/pythia-70m": (6, 8, 512, True), "EleutherAI/pythia-160m": (12, 12, 768, True),
    "EleutherAI/pythia-410m": (24, 16, 1024, True), "Qwen/Qwen2.5-0.5B": (24, 14, 896, False),
    "meta-llama/Llama-3.2-1B": (16, 32, 2048, False), "allenai/OLMo-2-0425-1B": (16, 16, 2048, False),
    "google/gemma-2-2b": (26, 8, 2304, False), "meta-llama/Llama-3.1-8B": (32, 32, 4096, False),
}
GENERIC_METRICS = ["logit_diff", "prob_diff", "kl"]


def model_supports(name: str) -> list[str]:
    """Metrics that fit a zoo model: the generic ones it can compute, plus its task's metric."""
    cfg = json.loads((ZOO_DIR / name / "config.json").read_text())
    task = ZOO_DIR / name / "task.json"
    task_metric = json.loads(task.read_text())["metric"] if task.exists() else None
    generic = [] if cfg.get("original_architecture") == "tracr" else list(GENERIC_METRICS)
    return generic + ([task_metric] if task_metric and task_metric not in generic else [])


def _entry(name: str, source: str, summary: dict, description: str, device, download_needed=False) -> dict:
    return {"name": name, "description": description, "source": source,
            **{k: summary.get(k) for k in ("n_layers", "n_heads", "d_model", "n_edges", "size_bytes")},
            "download_needed": download_needed, "dtypes": offered_dtypes(device), "metrics": list(GENERIC_METRICS)}


def _gb(n: int | None) -> str:
    return f", {human_size(n)}" if n else ""


def _native_entry(official: str, summary: dict, device) -> dict:
    about = "TransformerLens's own format in the local Hugging Face cache" + _gb(summary["size_bytes"])
    if summary["missing"]:  # e.g. its tokenizer's repo: from_pretrained fetches it when the hub is reachable
        about += "; not cached, so loading needs the hub: " + "; ".join(summary["missing"])
    return _entry(official, "cache", summary, about, device, download_needed=bool(summary["missing"]))


def list_models(device: str | None = None) -> list[dict]:
    """The zoo, the TransformerLens names and hub repos already complete in the local HF cache, and
    (only when the hub is reachable) a few well-known models that need a download. No weights are read."""
    out = []
    for name in zoo_names():
        cfg = json.loads((ZOO_DIR / name / "config.json").read_text())
        entry = _entry(name, "zoo", {**cfg, "n_edges": Graph.from_model(cfg).n_edges,
                                     "size_bytes": (ZOO_DIR / name / "model.safetensors").stat().st_size},
                       DESCRIPTIONS.get(name, ""), device)
        out.append({**entry, "metrics": model_supports(name)})
    cached = set()
    for repo, _ in hub.cached_repos():
        official = official_name(repo)
        if tl_native.is_native(official):
            summary = tl_native.summary(official)
            if summary is not None:
                cached |= {official.lower()}
                out.append(_native_entry(official, summary, device))
            continue
        snap = hub.snapshot(repo)
        summary = checkpoint_summary(snap) if hub.complete(snap) else None
        if summary is None or summary.get("error"):  # a cache also holds encoders, vision models, ...
            continue
        name = _tl_name(repo)
        cached |= {name.lower(), repo.lower()}
        out.append(_entry(name, "cache", summary, f"{summary['architecture']} in the local Hugging Face cache"
                          + _gb(summary["size_bytes"]), device))
    if hub.hub_reachable(timeout=1.0):
        for name, (L, H, d, parallel) in HUB_SUGGESTIONS.items():
            if name.lower() in cached or (official_name(name) or name).lower() in cached:
                continue
            n_edges = GraphConfig(L, H, d, parallel).n_edges
            out.append(_entry(name, "hub", {"n_layers": L, "n_heads": H, "d_model": d, "n_edges": n_edges},
                              "downloaded from the Hugging Face hub on first use", device, download_needed=True))
    return out


def local_models(model_dirs, device: str | None = None) -> list[dict]:
    """Checkpoint folders directly inside the allowed directories (EDGEWISE_MODEL_DIRS), or an allowed
    directory that is itself a checkpoint. A symlink that leads outside its allowed directory is
    neither listed nor followed (its target is never shown)."""
    out = []
    for d in model_dirs:
        root = Path(d).expanduser().resolve()
        if not root.is_dir():
            continue
        for folder in [root] + sorted(p for p in root.iterdir() if p.is_dir()):
            real = folder.resolve()
            cfg_file = folder / "config.json"
            if not real.is_relative_to(root) or not cfg_file.is_file() or not cfg_file.resolve().is_relative_to(root):
                continue
            summary = checkpoint_summary(real)
            if summary is None:
                continue
            about = (f"{summary['architecture']} checkpoint" + _gb(summary["size_bytes"]) if not summary.get("error")
                     else f"cannot be loaded: {summary['error']}")
            out.append(_entry(str(real), "local", summary, about, device))
    return out
