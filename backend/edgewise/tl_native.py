"""TransformerLens's own-format models (NeelNanda/…, ArthurConmy/…, Baidicoot/…: e.g. attn-only-2l,
gelu-2l, solu-1l), loaded from the local Hugging Face cache with no network, else from the hub.

Such a repo holds a config.json in TransformerLens's terms and a `*final.pth` state dict (not a
transformers checkpoint); the tokenizer lives in another repo, named by the config's tokenizer_name.
TL 3.9's from_pretrained reads config.json with hf_hub_download (served from the cache offline) but
finds the weights' file name with HfApi().list_repo_files, a hub request with no cache fallback: with
HF_HUB_OFFLINE=1 it raises OfflineModeIsEnabled even when every file is cached. So here the three
parts are looked up in the cache first; when all are there the model is built from them the way
from_pretrained builds it (TL's own config conversion and weight processing), touching no network.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformer_lens import HookedTransformer

from . import hub
from .checkpoints import human_size, quiet
from .graph import GraphConfig

PREFIXES = ("NeelNanda/", "ArthurConmy/", "Baidicoot/")  # the orgs TL 3.9 reads in its own format


def is_native(official: str | None) -> bool:
    return bool(official) and official.startswith(PREFIXES)


@dataclass
class CachedParts:
    """Where the parts of `repo` lie in the cache; `missing` says, one line each, what is not there."""
    repo: str
    snapshot: Path | None = None
    config: dict | None = None
    weights: Path | None = None
    tokenizer_repo: str | None = None
    tokenizer: Path | None = None
    missing: list[str] = field(default_factory=list)


def _tokenizer_snapshot(repo: str) -> Path | None:
    """A cached snapshot of `repo` (or of where it moved, e.g. gpt2 → openai-community/gpt2) that
    holds tokenizer files."""
    for candidate in [repo] + ([hub.MOVED[repo]] if repo in hub.MOVED else []):
        snap = hub.snapshot(candidate)
        if snap is not None and any((snap / f).exists() for f in hub.TOKENIZER_FILES):
            return snap
    return None


def find_cached(official: str) -> CachedParts:
    """Config, weights and tokenizer of `official` in the cache; reads config.json only."""
    parts = CachedParts(official, snapshot=hub.snapshot(official))
    snap = parts.snapshot
    if snap is None:
        parts.missing.append(f"{official}: not in the cache")
        return parts
    try:
        parts.config = json.loads((snap / "config.json").read_text())
    except (OSError, ValueError) as e:
        parts.missing.append(f"{official}: config.json ({type(e).__name__})")
    # TL takes the repo's first file ending in final.pth (e.g. model_final.pth); a download holds one
    final = sorted((p for p in snap.rglob("*final.pth") if p.exists()), key=lambda p: p.relative_to(snap).as_posix())
    if final:
        parts.weights = final[0]
    else:
        parts.missing.append(f"{official}: the weights (a file ending in final.pth, e.g. model_final.pth)")
    parts.tokenizer_repo = (parts.config or {}).get("tokenizer_name")
    if parts.tokenizer_repo:
        parts.tokenizer = _tokenizer_snapshot(parts.tokenizer_repo)
        if parts.tokenizer is None:
            parts.missing.append(f"{parts.tokenizer_repo}: the tokenizer (tokenizer.json or vocab files), "
                                 f"named by {official}'s config.json")
    return parts


def load(name: str, official: str, device: str, dtype: torch.dtype, report) -> HookedTransformer:
    """From the cache when it holds every part; else from the hub when reachable; else a clear error."""
    parts = find_cached(official)
    if not parts.missing:
        return load_cached(parts, device, dtype, report)
    if not hub.hub_reachable():
        why = "HF_HUB_OFFLINE is set" if hub.offline() else "no connection"
        raise RuntimeError(f"model {name!r} ({official}, TransformerLens's own format) cannot be loaded offline: "
                           f"missing from the local Hugging Face cache ({hub.cache_dir()}): "
                           + "; ".join(parts.missing) + f". The hub is unreachable ({why}).")
    report(0.0, f"downloading {official} through TransformerLens")
    with quiet():
        return HookedTransformer.from_pretrained(official, device=device, dtype=dtype).eval()


def load_cached(parts: CachedParts, device: str, dtype: torch.dtype, report) -> HookedTransformer:
    """from_pretrained's steps (TL 3.9, HookedTransformer.from_pretrained) with every file read from
    the cache: TL's config conversion, the state dict, the tokenizer, then the same processing."""
    import transformer_lens.loading_from_pretrained as loading
    from transformers import AutoTokenizer

    official, snap = parts.repo, parts.snapshot
    report(0.0, f"reading {official} from the local Hugging Face cache")
    with quiet():
        # TL's own conversion; revision = the snapshot, so hf_hub_download finds it without refs/main
        cfg = loading.get_pretrained_model_config(official, hf_cfg={}, fold_ln=True, device=device, dtype=dtype,
                                                  cache_dir=str(hub.cache_dir()), revision=snap.name,
                                                  local_files_only=True)
    report(0.1, f"reading weights ({parts.weights.name}, {human_size(parts.weights.stat().st_size)})")
    try:  # weights_only: a state dict is tensors; nothing in a cached file gets to run code on load
        state = torch.load(parts.weights, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file: say which
        raise RuntimeError(f"{official}: cannot read {parts.weights} ({type(e).__name__}: {e})") from None
    state = {k: v.to(dtype) for k, v in state.items()}
    if cfg.original_architecture == "neel-solu-old":  # the renames TL applies to these two formats
        state = loading.convert_neel_solu_old_weights(state, cfg)
    elif cfg.original_architecture == "mingpt":
        state = loading.convert_mingpt_weights(state, cfg)
    tokenizer = None
    if parts.tokenizer is not None:
        report(0.6, f"reading tokenizer {parts.tokenizer_repo}")
        try:  # as HookedTransformer.__init__ asks for it (add_bos_token for these architectures)
            tokenizer = AutoTokenizer.from_pretrained(str(parts.tokenizer), add_bos_token=True, local_files_only=True,
                                                      use_fast="phi" not in parts.tokenizer_repo.lower())
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(f"{official}: the cached tokenizer {parts.tokenizer_repo} ({parts.tokenizer}) "
                               f"does not load: {type(e).__name__}: {e}") from None
    # from_pretrained's defaults; a shortformer model (positions added to q and k only) can be neither
    # folded nor centred, and from_pretrained switches all three off for it
    process = cfg.positional_embedding_type != "shortformer"
    report(0.7, "folding LayerNorm and centring weights" if process else "building the model")
    with quiet():
        model = HookedTransformer(cfg, tokenizer, move_to_device=False)
        model.load_and_process_state_dict(state, fold_ln=process, center_writing_weights=process,
                                          center_unembed=process, fold_value_biases=True,
                                          refactor_factored_attn_matrices=False)
        model.move_model_modules_to_device()
    report(1.0, "loaded")
    return model.eval()


def summary(official: str) -> dict | None:
    """Shape, edge count and weight size of a cached own-format model from its config.json (no weights
    read); None unless config and weights are cached. `missing` lists what loading still needs."""
    parts = find_cached(official)
    c = parts.config
    if c is None or parts.weights is None:
        return None
    try:
        g = GraphConfig(int(c["n_layers"]), int(c["n_heads"]), int(c["d_model"]), False, bool(c.get("attn_only")))
    except (KeyError, TypeError, ValueError):
        return None
    return {"n_layers": g.n_layers, "n_heads": g.n_heads, "d_model": g.d_model, "n_edges": g.n_edges,
            "size_bytes": parts.weights.stat().st_size, "missing": parts.missing}
