"""load_model(): bundled zoo models, TransformerLens pretrained names, local Hugging Face checkpoints.

    load_model("tracr-reverse")        # zoo: weights in the package, no network, no JAX
    load_model("gpt2")                 # TransformerLens name: only when the hub is reachable
    load_model("/path/to/checkpoint")  # a local HF directory (config.json, weights, tokenizer)

Device: the `device` argument, else $EDGEWISE_DEVICE, else cuda when available, else cpu.
A zoo folder holds model.safetensors + config.json (HookedTransformerConfig kwargs), and
tokenizer.json when the model reads text.
"""
from __future__ import annotations

import json
import os
import socket
import warnings
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from .graph import Graph

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
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
                     "key-value lookup plus offset, its 8-edge circuit known by training",
}


@contextmanager
def _quiet():
    """TL 3.9 warns that HookedTransformer is deprecated (TL 4 drops it); edgewise pins TL 3.9."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated", category=DeprecationWarning)
        yield


def default_device() -> str:
    if os.environ.get("EDGEWISE_DEVICE"):
        return os.environ["EDGEWISE_DEVICE"]
    return "cuda" if torch.cuda.is_available() else "cpu"


def zoo_names() -> list[str]:
    return sorted(p.parent.name for p in ZOO_DIR.glob("*/config.json"))


def load_model(name: str, device: str | None = None, dtype: torch.dtype | None = None) -> HookedTransformer:
    """A HookedTransformer in eval mode. Zoo models are float32 unless `dtype` says otherwise."""
    device = device or default_device()
    with _quiet():
        if name in zoo_names():
            from . import tasks  # noqa: F401  (registers the zoo's task metrics, e.g. tracr_reverse)
            return _load_zoo(name, device, dtype or torch.float32)
        path = Path(name).expanduser()
        if path.is_dir():
            return _load_local_hf(path, device, dtype or torch.float32)
        return _load_pretrained(name, device, dtype or torch.float32)


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


def _load_local_hf(path: Path, device: str, dtype: torch.dtype) -> HookedTransformer:
    """A local Hugging Face causal-LM directory, converted by TransformerLens' weight converters."""
    import transformer_lens.loading_from_pretrained as loading
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").exists():
        raise ValueError(f"{path} is a directory but has no config.json: not a Hugging Face checkpoint")
    hf_model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    try:
        cfg = loading.get_pretrained_model_config(str(path), device=device, dtype=dtype, fold_ln=True)
    except (NotImplementedError, AttributeError, KeyError) as e:  # e.g. a GPT-2 config without n_ctx
        raise ValueError(f"{path}: TransformerLens 3.9 cannot convert this checkpoint's config ({e})") from None
    state = loading.get_pretrained_state_dict(str(path), cfg, hf_model, dtype=dtype)
    model = HookedTransformer(cfg, tokenizer, move_to_device=False)
    model.load_and_process_state_dict(state, fold_ln=True, center_writing_weights=True, center_unembed=True)
    model.move_model_modules_to_device()
    return model.eval()


def hub_reachable(timeout: float = 2.0) -> bool:
    """False when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set or the hub's port cannot be opened."""
    if any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_pretrained(name: str, device: str, dtype: torch.dtype) -> HookedTransformer:
    import transformer_lens.loading_from_pretrained as loading

    try:
        official = loading.get_official_model_name(name)
    except ValueError:
        raise ValueError(f"unknown model {name!r}: not a bundled model ({', '.join(zoo_names())}), "
                         "not a local directory, and not a TransformerLens pretrained name") from None
    if not hub_reachable():
        raise RuntimeError(f"model {name!r} ({official}) must be downloaded from the Hugging Face hub, which is "
                           "unreachable here (offline, or HF_HUB_OFFLINE set); bundled models load offline: "
                           f"{', '.join(zoo_names())}")
    return HookedTransformer.from_pretrained(name, device=device, dtype=dtype).eval()


def model_supports(name: str) -> list[str]:
    """Metrics that fit a zoo model: the generic ones it can compute, plus its task's metric."""
    cfg = json.loads((ZOO_DIR / name / "config.json").read_text())
    task = ZOO_DIR / name / "task.json"
    task_metric = json.loads(task.read_text())["metric"] if task.exists() else None
    generic = [] if cfg.get("original_architecture") == "tracr" else ["logit_diff", "prob_diff", "kl"]
    return generic + ([task_metric] if task_metric and task_metric not in generic else [])


def list_models() -> list[dict]:
    """The bundled models, read from their config files (no weights are loaded)."""
    out = []
    for name in zoo_names():
        cfg = json.loads((ZOO_DIR / name / "config.json").read_text())
        out.append({"name": name, "description": DESCRIPTIONS.get(name, ""), "n_layers": cfg["n_layers"],
                    "n_heads": cfg["n_heads"], "d_model": cfg["d_model"], "n_edges": Graph.from_model(cfg).n_edges,
                    "source": "zoo", "metrics": model_supports(name)})
    return out
