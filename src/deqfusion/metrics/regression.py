"""Sentiment-regression metrics of the CMU-MOSI literature, each under an explicit name.

Three binary accuracies ("Acc-2") are in use, and papers rarely say which one they report:

``neg_nonneg``
    negative (y < 0) vs non-negative (y >= 0), on every sample.
``neg_pos``
    negative (y < 0) vs positive (y > 0), samples whose *true* label is 0 dropped; a prediction counts as
    positive when it is > 0.
``ref``
    the Cross-Modal BERT / DEQ-fusion reference code: ``y > 0`` on both sides, on every sample (so a true 0 is
    "negative").

Each Acc-2 comes with its weighted F1, computed as ``f1_weighted(y_true, y_pred)`` (the reference passes the
arguments the other way round, which weights the classes by the predicted counts instead of the true ones).

Accuracy, F1 and MAE are scikit-learn's; what it lacks (the conventions, Acc-7/Acc-5, Pearson's r) is here.

Acc-7 compares ``round(clip(., -3, 3))`` of predictions and labels; rounding is numpy's (half to even), as in
the reference. Acc-5 does the same with ``clip(., -2, 2)``.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

ACC2_CONVENTIONS = ("neg_nonneg", "neg_pos", "ref")


def _as_1d(name: str, a) -> np.ndarray:
    arr = np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = _as_1d("y_true", y_true)
    p = _as_1d("y_pred", y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred has {p.size}")
    return t, p


def binarize(y_true, y_pred, convention: str) -> tuple[np.ndarray, np.ndarray]:
    """Binary (true, predicted) classes under an Acc-2 convention (1 = positive / non-negative)."""
    t, p = _pair(y_true, y_pred)
    if convention == "neg_nonneg":
        return (t >= 0).astype(np.int64), (p >= 0).astype(np.int64)
    if convention == "neg_pos":
        keep = t != 0
        return (t[keep] > 0).astype(np.int64), (p[keep] > 0).astype(np.int64)
    if convention == "ref":
        return (t > 0).astype(np.int64), (p > 0).astype(np.int64)
    raise ValueError(f"unknown Acc-2 convention {convention!r}; choose one of {list(ACC2_CONVENTIONS)}")


def acc2(y_true, y_pred, convention: str) -> float:
    """Binary accuracy under ``convention`` (see the module docstring). NaN if no sample is left."""
    t, p = binarize(y_true, y_pred, convention)
    return float(skm.accuracy_score(t, p)) if t.size else float("nan")


def f1_weighted(y_true, y_pred) -> float:
    """Support-weighted F1 (integer class labels): ``sklearn.metrics.f1_score(y_true, y_pred,
    average="weighted", zero_division=0)``; NaN when there are no samples."""
    t = np.asarray(y_true).reshape(-1)
    p = np.asarray(y_pred).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred has {p.size}")
    if t.size == 0:
        return float("nan")
    return float(skm.f1_score(t, p, average="weighted", zero_division=0))


def f1_acc2(y_true, y_pred, convention: str) -> float:
    """Weighted F1 of the binary classes of an Acc-2 convention, arguments in the right order."""
    t, p = binarize(y_true, y_pred, convention)
    return f1_weighted(t, p)


def mae(y_true, y_pred) -> float:
    t, p = _pair(y_true, y_pred)
    return float(skm.mean_absolute_error(t, p))


def pearson(y_true, y_pred) -> float:
    """Pearson correlation (scikit-learn has none); NaN when either side is constant (correlation undefined)."""
    t, p = _pair(y_true, y_pred)
    td, pd = t - t.mean(), p - p.mean()
    denom = np.sqrt((td**2).sum() * (pd**2).sum())
    return float((td * pd).sum() / denom) if denom > 0 else float("nan")


def acc_k(y_true, y_pred, bound: float) -> float:
    """Agreement of ``round(clip(., -bound, bound))`` (numpy's half-to-even rounding)."""
    t, p = _pair(y_true, y_pred)
    return float((np.round(np.clip(t, -bound, bound)) == np.round(np.clip(p, -bound, bound))).mean())


def acc7(y_true, y_pred) -> float:
    return acc_k(y_true, y_pred, 3.0)


def acc5(y_true, y_pred) -> float:
    return acc_k(y_true, y_pred, 2.0)


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """Every metric by name: ``mae``, ``corr``, ``acc7``, ``acc5`` and, per Acc-2 convention ``c``,
    ``acc2_<c>`` and ``f1_<c>``; plus ``n`` (samples) and ``n_nonzero`` (samples used by ``neg_pos``)."""
    t, p = _pair(y_true, y_pred)
    out: dict[str, float] = {"mae": mae(t, p), "corr": pearson(t, p), "acc7": acc7(t, p), "acc5": acc5(t, p)}
    for c in ACC2_CONVENTIONS:
        out[f"acc2_{c}"] = acc2(t, p, c)
        out[f"f1_{c}"] = f1_acc2(t, p, c)
    out["n"] = int(t.size)
    out["n_nonzero"] = int(np.sum(t != 0))
    return out
