"""Shared by the tools/ scripts: write a HookedTransformer and its task into backend/edgewise/zoo/<name>/."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "backend" / "edgewise" / "zoo"
sys.path.insert(0, str(ROOT / "backend"))

# HookedTransformerConfig fields worth keeping in config.json (the rest are derived or defaults)
CFG_KEYS = ("model_name", "n_layers", "n_heads", "d_head", "d_model", "d_mlp", "n_ctx", "d_vocab", "d_vocab_out",
            "act_fn", "normalization_type", "attn_only", "attention_dir", "positional_embedding_type",
            "default_prepend_bos", "original_architecture", "tokenizer_prepends_bos")


def config_dict(cfg) -> dict:
    d = cfg.to_dict()
    if d.get("attn_only"):
        d["d_mlp"] = None
    # None is kept where it is not the default (no LayerNorm, no activation)
    return {k: d[k] for k in CFG_KEYS if k in d and (d[k] is not None or k in ("normalization_type", "act_fn"))}


def save_model(model, name: str, source: str) -> Path:
    """model.safetensors (float32 state dict) + config.json."""
    out = ZOO / name
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()
          if not k.endswith((".IGNORE", ".mask"))}  # causal masks are rebuilt from the config
    save_file(sd, str(out / "model.safetensors"), metadata={"source": source})
    (out / "model.safetensors").chmod(0o644)
    (out / "config.json").write_text(json.dumps(config_dict(model.cfg), indent=1) + "\n")
    return out


def save_task(name: str, records: list[dict], task: dict) -> None:
    out = ZOO / name
    (out / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (out / "task.json").write_text(json.dumps({"name": name, "model": name, **task}, indent=1) + "\n")
