"""Multi-label F1 scores at a fixed threshold (micro, macro, samples and weighted averages), by scikit-learn's
``f1_score`` with ``zero_division=0`` (as MultiBench computes MM-IMDB's): a label (or, for the samples
average, a sample) with neither true nor predicted positives scores 0. A score is predicted positive when it
is strictly above the threshold; with ``from_logits=True`` the threshold applies to ``sigmoid(logits)``
(so 0.5 means logit > 0), matching the reference's ``round(sigmoid(x))``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn import metrics as skm
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
    pred = binarize(scores.detach().float(), threshold, from_logits).cpu().numpy().astype(np.int64)
    true = targets.detach().cpu().to(torch.float64)
    if not ((true == 0) | (true == 1)).all():
        raise ValueError("targets must be multi-hot (0/1)")
    true = true.numpy().astype(np.int64)
    return {f"{prefix}{k}{suffix}": float(skm.f1_score(true, pred, average=k, zero_division=0)) for k in F1_AVERAGES}
