"""Is a trained classifier degenerate? A check of the final (selected) model against the constant predictor.

A run can finish without any guard event and still leave a useless model (a learning rate far too large drives
the weights to a point where predictions are saturated and confidently wrong). :func:`classifier_health`
compares the selected model's validation cross-entropy with that of the *constant predictor*, which predicts the
training class frequencies (add-one smoothed) for every sample, and its accuracy with that of always predicting
the most frequent training class. The model is flagged **degenerate** when

- its last training loss or its validation probabilities are not finite, or
- its validation cross-entropy exceeds :data:`CE_FACTOR` times the constant predictor's and its validation
  accuracy is no better than the constant predictor's (worse calibrated and no more accurate than a model that
  ignores its inputs), or
- its validation cross-entropy exceeds :data:`CE_FACTOR_ANY` times the constant predictor's (infinite when a
  sample's true class gets probability 0), whatever its accuracy.

For a multi-label classifier (one sigmoid per label), :func:`multilabel_health` does the same with the mean
binary cross-entropy and the micro F1 (the constant predictor predicts each label's add-one smoothed training
frequency).

For a regressor trained on the absolute error, :func:`regression_health` compares the validation MAE with that of
the constant predictor of that loss (the median of the training targets): degenerate when the MAE is not finite
or above :data:`MAE_FACTOR` times the constant predictor's.

The factors leave short, barely trained runs (cross-entropy near the constant predictor's) and merely
over-confident ones unflagged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["CE_FACTOR", "CE_FACTOR_ANY", "MAE_FACTOR", "classifier_health", "multilabel_health",
           "regression_health"]

#: a validation cross-entropy above this multiple of the constant predictor's, with no better accuracy, is
#: degenerate
CE_FACTOR = 1.5
#: a validation cross-entropy above this multiple of the constant predictor's is degenerate whatever the accuracy
CE_FACTOR_ANY = 10.0
#: a validation MAE above this multiple of the constant (median) predictor's is degenerate
MAE_FACTOR = 1.5


def classifier_health(probs_val: Tensor | None, y_val: Tensor | None, y_fit: Tensor,
                      final_train_loss: float | None) -> dict:
    """``{"degenerate": reason or None, "final_train_loss", "val_ce", "constant_ce", "val_acc",
    "constant_acc"}`` (floats, None where not measured) for class probabilities ``probs_val`` (n, C) of the
    validation labels ``y_val``, the training labels ``y_fit`` and the last training loss."""
    out: dict = dict.fromkeys(("degenerate", "final_train_loss", "val_ce", "constant_ce", "val_acc",
                               "constant_acc"))
    if final_train_loss is not None:
        out["final_train_loss"] = float(final_train_loss)
    reasons = []
    if final_train_loss is not None and not math.isfinite(final_train_loss):
        reasons.append(f"the last training loss is {final_train_loss}")
    if probs_val is not None and y_val is not None and y_val.numel():
        y_val, y_fit = y_val.long().cpu(), y_fit.long().cpu()
        p = probs_val.detach().double().cpu()
        n_classes = p.shape[1]
        picked = p.gather(1, y_val.view(-1, 1)).squeeze(1)
        val_ce = float(-torch.log(picked).mean()) if bool(torch.isfinite(p).all()) else math.nan
        prior = (torch.bincount(y_fit, minlength=n_classes).double() + 1) / (y_fit.numel() + n_classes)
        constant_ce = float(-torch.log(prior[y_val]).mean())
        val_acc = float((p.argmax(1) == y_val).double().mean()) if bool(torch.isfinite(p).all()) else math.nan
        constant_acc = float((y_val == int(prior.argmax())).double().mean())
        out.update(val_ce=val_ce, constant_ce=constant_ce, val_acc=val_acc, constant_acc=constant_acc)
        if not bool(torch.isfinite(p).all()):
            reasons.append("its validation probabilities are not finite")
        elif not math.isfinite(val_ce):
            reasons.append(f"validation cross-entropy {val_ce} (a sample's true class has probability 0; the "
                           f"constant predictor's is {constant_ce:.4g}), accuracy {val_acc:.3f} vs {constant_acc:.3f}")
        elif val_ce > CE_FACTOR_ANY * constant_ce or (val_ce > CE_FACTOR * constant_ce
                                                      and not val_acc > constant_acc):
            reasons.append(f"validation cross-entropy {val_ce:.4g} vs {constant_ce:.4g} and accuracy "
                           f"{val_acc:.3f} vs {constant_acc:.3f} for the constant predictor")
    out["degenerate"] = "; ".join(reasons) or None
    return out


def regression_health(val_mae: float, y_val, y_fit) -> dict:
    """``{"degenerate": reason or None, "val_mae", "constant_mae"}`` for the validation MAE ``val_mae`` of a
    model, the validation targets ``y_val`` and the training targets ``y_fit`` (array-likes)."""
    y_val = torch.as_tensor(y_val, dtype=torch.float64).flatten()
    y_fit = torch.as_tensor(y_fit, dtype=torch.float64).flatten()
    constant = float(torch.quantile(y_fit, 0.5))
    constant_mae = float((y_val - constant).abs().mean())
    val_mae = float(val_mae)
    reason = None
    if not math.isfinite(val_mae):
        reason = f"validation MAE {val_mae}"
    elif val_mae > MAE_FACTOR * constant_mae:
        reason = (f"validation MAE {val_mae:.4g} vs {constant_mae:.4g} for the constant predictor (the training "
                  "median)")
    return {"degenerate": reason, "val_mae": val_mae, "constant_mae": constant_mae}


def multilabel_health(val_bce: float, val_micro_f1: float, y_val, y_fit) -> dict:
    """``{"degenerate": reason or None, "val_bce", "constant_bce", "val_micro_f1", "constant_micro_f1"}`` for a
    multi-label model's validation binary cross-entropy (mean over samples and labels) and micro F1, the
    validation and the training multi-hot labels (array-likes of shape (n, L))."""
    from sklearn.metrics import f1_score

    y_val = torch.as_tensor(y_val, dtype=torch.float64)
    y_fit = torch.as_tensor(y_fit, dtype=torch.float64)
    prior = (y_fit.sum(0) + 1) / (y_fit.shape[0] + 2)
    constant_bce = float(-(y_val * prior.log() + (1 - y_val) * (1 - prior).log()).mean())
    constant_pred = (prior > 0.5).expand_as(y_val).numpy()
    constant_f1 = float(f1_score(y_val.numpy().astype(int), constant_pred.astype(int), average="micro",
                                 zero_division=0))
    val_bce, val_micro_f1 = float(val_bce), float(val_micro_f1)
    reason = None
    if not math.isfinite(val_bce):
        reason = f"validation binary cross-entropy {val_bce}"
    elif val_bce > CE_FACTOR_ANY * constant_bce or (val_bce > CE_FACTOR * constant_bce
                                                    and not val_micro_f1 > constant_f1):
        reason = (f"validation binary cross-entropy {val_bce:.4g} vs {constant_bce:.4g} and micro F1 "
                  f"{val_micro_f1:.3f} vs {constant_f1:.3f} for the constant predictor")
    return {"degenerate": reason, "val_bce": val_bce, "constant_bce": constant_bce, "val_micro_f1": val_micro_f1,
            "constant_micro_f1": constant_f1}
