"""Multi-label F1 scores at a fixed threshold (micro, macro, samples and weighted averages).

The conventions follow scikit-learn's ``f1_score`` with ``zero_division=0``: a label (or, for the samples
average, a sample) with neither true nor predicted positives scores 0. A score is predicted positive when it
is strictly above the threshold; with ``from_logits=True`` the threshold applies to ``sigmoid(logits)``
(so 0.5 means logit > 0), matching the reference's ``round(sigmoid(x))``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["multilabel_f1", "binarize", "F1_AVERAGES"]

F1_AVERAGES = ("micro", "macro", "samples", "weighted")


def binarize(scores: Tensor, threshold: float = 0.5, from_logits: bool = True) -> Tensor:
    """Boolean predictions: ``sigmoid(scores) > threshold`` (or ``scores > threshold`` for probabilities)."""
    if from_logits:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"a probability threshold must lie in (0, 1), got {threshold}")
        return scores > math.log(threshold / (1.0 - threshold))
    return scores > threshold


def _f1(tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
    denom = 2 * tp + fp + fn
    return torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(denom))


def multilabel_f1(scores: Tensor, targets: Tensor, threshold: float = 0.5, from_logits: bool = True,
                  prefix: str = "", suffix: str = "_f1") -> dict[str, float]:
    """F1 scores of multi-label predictions.

    Args:
        scores: ``(n, L)`` logits (or probabilities with ``from_logits=False``).
        targets: ``(n, L)`` multi-hot labels (0/1, any dtype).
        threshold: probability threshold (strictly above is positive).
        from_logits: whether ``scores`` are logits.

    Returns:
        ``{"micro_f1", "macro_f1", "samples_f1", "weighted_f1"}`` as Python floats (names built from
        ``prefix`` + average + ``suffix``).
    """
    if scores.dim() != 2 or scores.shape != targets.shape:
        raise ValueError(
            f"scores and targets must both be (samples, labels); got {tuple(scores.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if scores.shape[0] == 0:
        raise ValueError("cannot score an empty set of predictions")
    pred = binarize(scores.detach().float(), threshold, from_logits).to(torch.float64)
    true = targets.detach().to(torch.float64)
    if not ((true == 0) | (true == 1)).all():
        raise ValueError("targets must be multi-hot (0/1)")
    tp_l = (pred * true).sum(0)
    fp_l = (pred * (1 - true)).sum(0)
    fn_l = ((1 - pred) * true).sum(0)
    per_label = _f1(tp_l, fp_l, fn_l)
    support = true.sum(0)
    micro = _f1(tp_l.sum(), fp_l.sum(), fn_l.sum())
    weighted = (per_label * support).sum() / support.sum() if support.sum() > 0 else torch.zeros(())
    per_sample = _f1((pred * true).sum(1), (pred * (1 - true)).sum(1), ((1 - pred) * true).sum(1))
    values = {"micro": micro, "macro": per_label.mean(), "samples": per_sample.mean(), "weighted": weighted}
    return {f"{prefix}{k}{suffix}": float(v) for k, v in values.items()}
