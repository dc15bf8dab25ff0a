"""The bundled tracr tasks' metrics, registered on import (models.py and tasks.py import this module):
`tracr_reverse` and `tracr_proportion`, built from each model's vocab.json."""
from __future__ import annotations

import json

import torch

from ..metrics import register_metric
from . import ZOO_DIR

def _vocab(name: str) -> dict | None:
    path = ZOO_DIR / name / "vocab.json"
    return json.loads(path.read_text()) if path.exists() else None


def _output_positions(logits: torch.Tensor, batch) -> torch.Tensor:
    """[B, P] bool: positions 1..last (position 0 is BOS and has no output)."""
    pos = torch.arange(logits.shape[1], device=logits.device)[None]
    return (pos >= 1) & (pos <= batch.last[:, None]) & batch.mask


def make_reverse_metric(vocab: dict):
    """Σ_pos logit(clean target) − logit(corrupted target), where the target at position p of an
    n-token input is the token at position n+1−p. Linear in the logits: the gradient never vanishes."""
    lut = torch.full((len(vocab["input"]),), -1, dtype=torch.long)
    for tok, i in vocab["input"].items():
        if tok in vocab["output"]:
            lut[i] = vocab["output"][tok]

    def tracr_reverse(logits, batch):
        ok = _output_positions(logits, batch)
        pos = torch.arange(logits.shape[1], device=logits.device)[None]
        src = (batch.last[:, None] + 1 - pos).clamp(0, logits.shape[1] - 1)  # [B, P] position read from
        table = lut.to(logits.device)
        t_clean, t_corr = table[batch.clean.gather(1, src)], table[batch.corrupted.gather(1, src)]
        ok = ok & (t_clean >= 0) & (t_corr >= 0)
        pick = lambda t: logits.gather(2, t.clamp(min=0)[..., None])[..., 0]  # noqa: E731
        return ((pick(t_clean) - pick(t_corr)) * ok).sum(1)

    return tracr_reverse


def make_proportion_metric(vocab: dict):
    """Σ_pos (f_clean(p) − f_corrupted(p)) · output(p), f(p) = fraction of x in positions 1..p and
    output(p) the one residual direction tracr writes the fraction to. Clean minus corrupted run =
    Σ (f_clean − f_corrupted)² ≥ 0; the gradient is constant."""
    x_id = vocab["input"]["x"]

    def tracr_proportion(logits, batch):
        ok = _output_positions(logits, batch)
        pos = torch.arange(logits.shape[1], device=logits.device)[None]
        frac = lambda ids: ((ids == x_id) & ok).cumsum(1) / pos.clamp(min=1)  # noqa: E731
        target = (frac(batch.clean) - frac(batch.corrupted)).to(logits.dtype)
        return (target * logits[..., 0] * ok).sum(1)

    return tracr_proportion


def _register_task_metrics() -> None:
    if (v := _vocab("tracr-reverse")) is not None:
        register_metric("tracr_reverse", make_reverse_metric(v),
                        "tracr-reverse: Σ over positions of logit(clean target) − logit(corrupted target)")
    if (v := _vocab("tracr-proportion")) is not None:
        register_metric("tracr_proportion", make_proportion_metric(v),
                        "tracr-proportion: Σ over positions of (clean − corrupted fraction of x) × output")


_register_task_metrics()
