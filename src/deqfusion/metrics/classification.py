"""Classification metrics by scikit-learn (as MM-Dynamics and MOGONET compute theirs): accuracy, F1 (binary,
macro, weighted), ROC AUC, with the input checks the experiments rely on.

Every function accepts NumPy arrays, torch tensors or lists. Labels are integers ``0..C-1``; scores are
class probabilities (or any monotone score) of shape ``(N, C)``, or ``(N,)`` for the positive class of a
binary problem. A class with no support and no predictions has F1 0 (``zero_division=0``) and, for macro F1,
still counts in the average when ``num_classes`` is given.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

__all__ = [
    "accuracy",
    "confusion_matrix",
    "f1_per_class",
    "f1_score",
    "roc_auc_binary",
    "classification_metrics",
]


def _as_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _labels(a, name: str) -> np.ndarray:
    arr = _as_numpy(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.all(np.equal(np.mod(arr, 1), 0)):
        raise ValueError(f"{name} must hold integer class labels")
    return arr.astype(np.int64)


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.shape[0]} labels but y_pred has {p.shape[0]}")
    if t.size == 0:
        raise ValueError("no samples to score")
    if t.min() < 0 or p.min() < 0:
        raise ValueError("class labels must be non-negative")
    return t, p


def accuracy(y_true, y_pred) -> float:
    """Fraction of exact matches (``sklearn.metrics.accuracy_score``)."""
    t, p = _pair(y_true, y_pred)
    return float(skm.accuracy_score(t, p))


def _classes(t: np.ndarray, p: np.ndarray, num_classes: int | None) -> np.ndarray:
    n = int(max(t.max(), p.max()) + 1) if num_classes is None else int(num_classes)
    if t.max() >= n or p.max() >= n:
        raise ValueError(f"labels must be below num_classes={n}")
    return np.arange(n)


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """``C[i, j]`` = number of samples of true class ``i`` predicted as ``j`` (``sklearn.metrics.confusion_matrix``
    over the classes ``0..C-1``)."""
    t, p = _pair(y_true, y_pred)
    return skm.confusion_matrix(t, p, labels=_classes(t, p, num_classes)).astype(np.int64)


def f1_per_class(y_true, y_pred, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-class F1 and support (number of true samples) for classes ``0..C-1``.

    A class with no true and no predicted samples gets F1 0 (scikit-learn's ``zero_division=0``).
    """
    t, p = _pair(y_true, y_pred)
    labels = _classes(t, p, num_classes)
    f1 = skm.f1_score(t, p, labels=labels, average=None, zero_division=0)
    support = np.bincount(t, minlength=len(labels)).astype(np.float64)
    return np.asarray(f1, dtype=np.float64), support


def f1_score(y_true, y_pred, average: str = "binary", num_classes: int | None = None,
             pos_label: int = 1) -> float:
    """F1 score (``sklearn.metrics.f1_score`` with ``zero_division=0``).

    Args:
        average: ``"binary"`` (F1 of ``pos_label``), ``"macro"`` (unweighted mean over classes) or
            ``"weighted"`` (mean weighted by support).
        num_classes: number of classes; when None, the classes are those seen in ``y_true`` or ``y_pred``
            (as scikit-learn does).
    """
    if average not in ("binary", "macro", "weighted"):
        raise ValueError(f"unknown average {average!r}; use 'binary', 'macro' or 'weighted'")
    t, p = _pair(y_true, y_pred)
    labels = None if num_classes is None else _classes(t, p, num_classes)
    if average == "binary":
        if (num_classes is not None and pos_label >= num_classes) or (
                num_classes is None and pos_label > max(t.max(), p.max())):
            return 0.0
        return float(skm.f1_score(t, p, labels=[pos_label], average="macro", zero_division=0))
    return float(skm.f1_score(t, p, labels=labels, average=average, zero_division=0))


def roc_auc_binary(y_true, scores) -> float:
    """Area under the ROC curve for a binary problem (labels 0/1; higher score = more likely class 1), by
    ``sklearn.metrics.roc_auc_score`` (ties count one half). Raises ``ValueError`` when only one class is
    present, as the AUC is undefined then.
    """
    t = _labels(y_true, "y_true")
    s = _as_numpy(scores).astype(np.float64)
    if s.ndim == 2 and s.shape[1] == 2:
        s = s[:, 1]
    if s.ndim != 1 or s.shape[0] != t.shape[0]:
        raise ValueError(f"scores must have shape ({t.shape[0]},) or ({t.shape[0]}, 2), got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or inf")
    if not np.all((t == 0) | (t == 1)):
        raise ValueError("roc_auc_binary needs labels 0 and 1")
    if t.min() == t.max():
        raise ValueError("ROC AUC is undefined when y_true holds a single class")
    return float(skm.roc_auc_score(t, s))


def classification_metrics(y_true, probs, num_classes: int | None = None) -> dict[str, float]:
    """The metrics the multi-omics experiments report, from class probabilities ``(N, C)``.

    Binary problems (C = 2): ``acc``, ``f1`` (positive class 1), ``auc``, plus ``f1_macro``.
    Multi-class: ``acc``, ``f1_weighted``, ``f1_macro``. Values are fractions in [0, 1].
    """
    p = _as_numpy(probs).astype(np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must have shape (N, C), got {p.shape}")
    c = p.shape[1] if num_classes is None else int(num_classes)
    if p.shape[1] != c:
        raise ValueError(f"probs has {p.shape[1]} columns but num_classes={c}")
    pred = p.argmax(axis=1)
    out = {"acc": accuracy(y_true, pred)}
    if c == 2:
        out["f1"] = f1_score(y_true, pred, average="binary", num_classes=2)
        out["f1_macro"] = f1_score(y_true, pred, average="macro", num_classes=2)
        out["auc"] = roc_auc_binary(y_true, p[:, 1])
    else:
        out["f1_weighted"] = f1_score(y_true, pred, average="weighted", num_classes=c)
        out["f1_macro"] = f1_score(y_true, pred, average="macro", num_classes=c)
    return out
