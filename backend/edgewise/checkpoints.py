"""A Hugging Face checkpoint folder (config.json, weights, tokenizer) → a HookedTransformer.

Its own config.json becomes a TransformerLens config through arch.py; transformers reads the weights
(one progress step per tensor); TransformerLens's per-architecture converter and weight processing
(fold norms, centre writing weights and unembedding, fold value biases; not for post-norm blocks)
give the HookedTransformer. Processing runs in float32 whatever `dtype` is (TransformerLens upcasts);
the model is then held in `dtype`. Grouped-query attention stays grouped in the model: the engine
ungroups it while it runs (k/v inputs per query head, as MIB counts edges).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from . import arch, hub

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16, "half": torch.float16, "float64": torch.float64}


class _ObsoleteWarning(logging.Filter):
    """TL 3.9 advises against processing weights in half precision, but its processing upcasts to
    float32 itself (weight_processing.process_weights): the advice does not apply to these loads."""

    def filter(self, record):
        return "advised to use `from_pretrained_no_processing`" not in str(record.msg)


logging.getLogger().addFilter(_ObsoleteWarning())


@contextmanager
def quiet():
    """TL 3.9 warns that HookedTransformer is deprecated (TL 4 drops it); edgewise pins TL 3.9."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated", category=DeprecationWarning)
        yield


def default_device() -> str:
    if os.environ.get("EDGEWISE_DEVICE"):
        return os.environ["EDGEWISE_DEVICE"]
    return "cuda" if torch.cuda.is_available() else "cpu"


def parse_dtype(dtype) -> torch.dtype:
    """None → float32; a torch dtype; or a name: float32, bfloat16 (bf16), float16 (fp16)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype).lower() not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose from float32, bfloat16, float16")
    return DTYPES[str(dtype).lower()]


def hf_config(folder: Path):
    """The transformers config of a checkpoint folder; ValueError says what is wrong with it."""
    from transformers import AutoConfig

    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} has no config.json: not a Hugging Face checkpoint")
    try:  # refuse by name first: transformers may not even know a model type TL cannot hold
        declared = (json.loads((folder / "config.json").read_text()).get("architectures") or [None])[0]
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"{folder}/config.json is not a JSON object: {e}") from None
    if declared:
        try:
            arch.check_supported(declared)
        except arch.UnsupportedArchitecture as e:
            raise ValueError(f"{folder}: {e}") from None
    try:
        return AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (ValueError, KeyError, OSError) as e:  # e.g. a model_type transformers does not know
        raise ValueError(f"{folder}/config.json cannot be read by transformers: {e}") from None


def tl_config(config, device: str, dtype: torch.dtype, name: str) -> HookedTransformerConfig:
    """The HookedTransformerConfig of a transformers config, norms marked folded where they will be."""
    d = arch.tl_config_dict(config)
    d.update(model_name=name, init_weights=False, device=device, dtype=dtype, n_devices=1, from_checkpoint=False)
    d.setdefault("default_prepend_bos", True)
    if _processing(d)["fold_ln"] and d.get("normalization_type") in ("LN", "RMS"):
        d["normalization_type"] += "Pre"
    return HookedTransformerConfig.from_dict(d)


def _processing(cfg) -> dict:
    """TransformerLens's weight processing, minus what a block layout makes invalid: folding and centring
    assume a norm on a sublayer's input (not post-norm, not shortformer); centring the unembedding
    shifts logits by a constant, which a logit soft-cap does not pass through unchanged."""
    get = cfg.get if isinstance(cfg, dict) else lambda k, default=None: getattr(cfg, k, default)
    pre_norm = get("original_architecture") not in arch.POST_NORM and get("positional_embedding_type") != "shortformer"
    softcap = (get("output_logits_soft_cap", -1.0) or -1.0) > 0
    return {"fold_ln": pre_norm, "center_writing_weights": pre_norm,
            "center_unembed": get("positional_embedding_type") != "shortformer" and not softcap,
            "fold_value_biases": True}


def load_checkpoint(folder, device: str | None = None, dtype=None, progress=None, name: str | None = None):
    """A HookedTransformer from a Hugging Face checkpoint folder (config.json, weights, tokenizer)."""
    import transformer_lens.loading_from_pretrained as loading
    from transformers import AutoModelForCausalLM

    folder, device, dtype = Path(folder), device or default_device(), parse_dtype(dtype)
    report = progress or (lambda fraction, detail: None)
    config = hf_config(folder)
    try:
        cfg = tl_config(config, device, dtype, name or folder.name)
    except arch.UnsupportedArchitecture as e:
        raise ValueError(f"{folder}: {e}") from None
    files = hub.weight_files(folder)
    if files is None:
        raise ValueError(f"{folder} has no complete weights (model.safetensors, or every shard its index lists)")
    size = sum(f.stat().st_size for f in files)
    report(0.0, f"reading weights ({len(files)} file{'s' * (len(files) > 1)}, {human_size(size)})")
    with quiet(), reading_progress(lambda f, d: report(0.85 * f, d)):
        hf_model = AutoModelForCausalLM.from_pretrained(str(folder), config=config, dtype=dtype, local_files_only=True)
    report(0.85, "converting to TransformerLens")
    with quiet():
        state = loading.get_pretrained_state_dict(str(folder), cfg, hf_model, dtype=dtype)
        del hf_model
        model = HookedTransformer(cfg, _tokenizer(folder), move_to_device=False)
        model.load_and_process_state_dict(state, **_processing(cfg))
        for p in model.parameters():  # TL 3.9 builds MoE experts and routers in torch's default dtype
            if p.is_floating_point() and p.dtype != dtype:
                p.data = p.data.to(dtype)
    report(0.95, f"moving to {device}")
    model.move_model_modules_to_device()
    report(1.0, "loaded")
    return model.eval()


def _tokenizer(folder: Path):
    """The checkpoint's tokenizer, or None when it ships none (prompt pairs then give token ids)."""
    from transformers import AutoTokenizer

    if not any((folder / f).exists() for f in hub.TOKENIZER_FILES):
        return None
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


_reader, _install = threading.local(), threading.Lock()


@contextmanager
def reading_progress(report):
    """Route transformers' "Loading weights" bar (one step per tensor) of this thread to report(fraction, detail)."""
    from transformers.utils import logging as hf_logging

    if not hasattr(hf_logging, "set_tqdm_hook"):  # older transformers: no per-tensor progress
        yield
        return
    with _install:  # one process-wide hook, chained to any earlier one; it reports for the threads that ask
        if not getattr(hf_logging, "_edgewise_hook", False):
            previous = hf_logging.set_tqdm_hook(None)

            def hook(factory, args, kwargs):
                own = getattr(_reader, "report", None) if kwargs.get("desc") == "Loading weights" else None
                if own:  # this thread's load reports through `own`: no second bar on the terminal
                    kwargs = {**kwargs, "disable": True}
                bar = previous(factory, args, kwargs) if previous else factory(*args, **kwargs)
                return _CountingBar(bar, args, own) if own else bar

            hf_logging.set_tqdm_hook(hook)
            hf_logging._edgewise_hook = True
    _reader.report = report
    try:
        yield
    finally:
        _reader.report = None


class _CountingBar:
    """Wraps a tqdm bar over tensors; reports about 50 times in all."""

    def __init__(self, bar, args, report):
        self.bar, self.report = bar, report
        self.total = len(args[0]) if args and hasattr(args[0], "__len__") else 0

    def __iter__(self):
        step = max(1, self.total // 50)
        for i, item in enumerate(self.bar, 1):
            yield item
            if self.total and (i % step == 0 or i == self.total):
                self.report(i / self.total, f"reading weights: {i} of {self.total} tensors")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()
        return False

    def __getattr__(self, name):
        return getattr(self.bar, name)


_summaries: dict = {}


def checkpoint_summary(folder: Path) -> dict | None:
    """Shape, edge count and weight size of a checkpoint folder from its config.json alone (no weights
    read); None without a readable config.json. When edgewise cannot load it, "error" says why and the
    shape is read from the raw config. Kept until config.json changes."""
    cfg_file = folder / "config.json"
    try:
        key = (str(folder), cfg_file.stat().st_mtime_ns)
        raw = json.loads(cfg_file.read_text())
    except (OSError, ValueError):
        return None
    if key not in _summaries:
        try:
            config = hf_config(folder)
            g = arch.graph_config(config)
            summary = {"architecture": arch.SUPPORTED[arch.architecture(config)], "n_layers": g.n_layers,
                       "n_heads": g.n_heads, "d_model": g.d_model, "n_edges": g.n_edges}
        except (ValueError, KeyError, AttributeError, TypeError, NotImplementedError, RuntimeError) as e:
            pick = lambda *keys: next((raw[k] for k in keys if isinstance(raw.get(k), int)), None)  # noqa: E731
            summary = {"architecture": None, "n_layers": pick("num_hidden_layers", "n_layer", "n_layers"),
                       "n_heads": pick("num_attention_heads", "n_head", "n_heads"),
                       "d_model": pick("hidden_size", "n_embd", "d_model"), "n_edges": None, "error": str(e)}
        _summaries[key] = summary
    return {**_summaries[key], "size_bytes": hub.size_bytes(folder)}  # weights may change under one config


def human_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


