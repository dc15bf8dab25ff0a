"""Metrics: one value per prompt pair, read from the logits at each pair's last real position.

A metric is `fn(logits [B, P, V], batch) -> [B]`. Attribution sums it over the batch and divides
the scores by the number of pairs once, so scores do not depend on how pairs are batched.
Task metrics (zoo models) register themselves with `register_metric`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable
    description: str = ""
    needs_answers: bool = True
    needs_clean_logits: bool = False
    zero_grad_at_clean: bool = False  # plain EAP takes its gradient at the clean point: all scores 0

    def __call__(self, logits: torch.Tensor, batch) -> torch.Tensor:
        if self.needs_answers and batch.answer is None:
            raise ValueError(f"metric {self.name!r} needs answer and wrong_answer in every pair")
        return self.fn(logits, batch)


METRICS: dict[str, Metric] = {}


def register_metric(name: str, fn: Callable, description: str = "", *, needs_answers: bool = False,
                    needs_clean_logits: bool = False, zero_grad_at_clean: bool = False) -> Metric:
    """Add a task metric under `name` (overwrites a metric of the same name)."""
    METRICS[name] = Metric(name, fn, description, needs_answers, needs_clean_logits, zero_grad_at_clean)
    return METRICS[name]


def get_metric(metric: str | Metric | Callable) -> Metric:
    if isinstance(metric, Metric):
        return metric
    if callable(metric):
        return Metric(getattr(metric, "__name__", "custom"), metric, needs_answers=False)
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(sorted(METRICS))}")
    return METRICS[metric]


def last_logits(logits: torch.Tensor, batch) -> torch.Tensor:
    """[B, V] logits at each pair's last real position."""
    return logits[torch.arange(logits.shape[0], device=logits.device), batch.last]


def logit_diff(logits, batch):
    """logit(answer) − logit(wrong_answer) at the last position."""
    last = last_logits(logits, batch)
    return last.gather(1, batch.answer[:, None])[:, 0] - last.gather(1, batch.wrong_answer[:, None])[:, 0]


def prob_diff(logits, batch):
    """p(answer) − p(wrong_answer) at the last position."""
    p = last_logits(logits, batch).softmax(-1)
    return p.gather(1, batch.answer[:, None])[:, 0] - p.gather(1, batch.wrong_answer[:, None])[:, 0]


def kl(logits, batch):
    """KL(clean ‖ this run) of the next-token distribution at the last position."""
    logp = last_logits(logits, batch).log_softmax(-1)
    logq = last_logits(batch.clean_logits, batch).log_softmax(-1)
    return (logq.exp() * (logq - logp)).sum(-1)


register_metric("logit_diff", logit_diff, "logit of the answer minus logit of the wrong answer", needs_answers=True)
register_metric("prob_diff", prob_diff, "probability of the answer minus that of the wrong answer", needs_answers=True)
register_metric("kl", kl, "KL divergence from the clean next-token distribution (no answers needed)",
                needs_clean_logits=True, zero_grad_at_clean=True)


def warn_if_vanishing(metric: Metric, method: str) -> str | None:
    """EAP (and RelP, whose coefficients start from the same output gradient) on a metric whose gradient
    is 0 at the clean point scores every edge ~0: say so."""
    if metric.zero_grad_at_clean and method in ("eap", "relp"):
        msg = (f"metric {metric.name!r} has zero gradient at the clean point, so {method} scores are ~0 "
               "(up to float noise); use method='eap-ig-inputs' or 'clean-corrupted'")
        warnings.warn(msg, stacklevel=3)
        return msg
    return None
