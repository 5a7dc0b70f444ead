"""Classification metrics computed with NumPy: accuracy, F1 (binary, macro, weighted), ROC AUC.

Every function accepts NumPy arrays, torch tensors or lists. Labels are integers ``0..C-1``; scores are
class probabilities (or any monotone score) of shape ``(N, C)``, or ``(N,)`` for the positive class of a
binary problem. Conventions follow scikit-learn where one is needed (a class with no support and no
predictions has F1 0 and, for macro F1, still counts in the average when ``num_classes`` is given; ties in
ROC AUC count one half), and the tests check the values against scikit-learn.
"""

from __future__ import annotations

import numpy as np

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
    """Fraction of exact matches."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """``C[i, j]`` = number of samples of true class ``i`` predicted as ``j``."""
    t, p = _pair(y_true, y_pred)
    n = int(max(t.max(), p.max()) + 1) if num_classes is None else int(num_classes)
    if t.max() >= n or p.max() >= n:
        raise ValueError(f"labels must be below num_classes={n}")
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def f1_per_class(y_true, y_pred, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-class F1 and support (number of true samples) for classes ``0..C-1``.

    A class with no true and no predicted samples gets F1 0 (scikit-learn's ``zero_division=0``).
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    denom = support + predicted
    f1 = np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1, support


def f1_score(y_true, y_pred, average: str = "binary", num_classes: int | None = None,
             pos_label: int = 1) -> float:
    """F1 score.

    Args:
        average: ``"binary"`` (F1 of ``pos_label``), ``"macro"`` (unweighted mean over classes) or
            ``"weighted"`` (mean weighted by support).
        num_classes: number of classes; when None, the classes are those seen in ``y_true`` or ``y_pred``
            (as scikit-learn does).
    """
    f1, support = f1_per_class(y_true, y_pred, num_classes)
    if average == "binary":
        if pos_label >= len(f1):
            return 0.0
        return float(f1[pos_label])
    if num_classes is None:
        t, p = _pair(y_true, y_pred)
        seen = np.zeros(len(f1), dtype=bool)
        seen[np.unique(np.concatenate([t, p]))] = True
        f1, support = f1[seen], support[seen]
    if average == "macro":
        return float(f1.mean())
    if average == "weighted":
        total = support.sum()
        return float((f1 * support).sum() / total) if total > 0 else 0.0
    raise ValueError(f"unknown average {average!r}; use 'binary', 'macro' or 'weighted'")


def roc_auc_binary(y_true, scores) -> float:
    """Area under the ROC curve for a binary problem (labels 0/1; higher score = more likely class 1).

    Computed with the rank statistic (Mann-Whitney U), ties counted as one half. Raises ``ValueError`` when
    only one class is present, as the AUC is undefined then.
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
    n_pos = int(t.sum())
    n_neg = int(t.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC is undefined when y_true holds a single class")
    ranks = _average_ranks(s)
    u = ranks[t == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..N with ties given the mean of the ranks they span."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(x.size, dtype=np.float64)
    # boundaries of runs of equal values
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], xs.size]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + 1 + e) / 2.0
    return ranks


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
