import math

import pytest
import torch

from deqfusion.training.health import (
    CE_FACTOR,
    CE_FACTOR_ANY,
    MAE_FACTOR,
    classifier_health,
    multilabel_health,
    regression_health,
)


def _constant_ce(y_fit, y_val, n_classes):
    # written out: add-one smoothed training frequencies, mean negative log-likelihood of the validation labels
    counts = [sum(1 for t in y_fit.tolist() if t == c) for c in range(n_classes)]
    prior = [(k + 1) / (len(y_fit) + n_classes) for k in counts]
    return -sum(math.log(prior[t]) for t in y_val.tolist()) / len(y_val)


def test_scores_against_the_constant_predictor():
    y_fit = torch.tensor([0, 0, 0, 1, 1, 2])
    y_val = torch.tensor([0, 1, 2, 0])
    good = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.7, 0.2, 0.1]],
                        dtype=torch.float64)
    h = classifier_health(good, y_val, y_fit, 0.3)
    assert h["degenerate"] is None and h["final_train_loss"] == 0.3
    assert math.isclose(h["constant_ce"], _constant_ce(y_fit, y_val, 3), rel_tol=1e-12)
    assert math.isclose(h["val_ce"], -(3 * math.log(0.8) + math.log(0.7)) / 4, rel_tol=1e-12)
    assert h["val_acc"] == 1.0 and h["constant_acc"] == 0.5  # the constant predictor says class 0


def test_flags_a_degenerate_model():
    y_fit = torch.tensor([0, 0, 1, 1])
    y_val = torch.tensor([0, 1, 1, 0])
    constant = _constant_ce(y_fit, y_val, 2)  # log 2
    # confidently wrong on half the samples, no better accuracy: cross-entropy above CE_FACTOR x constant
    p_wrong = 1 - math.exp(-2 * CE_FACTOR * constant)  # the CE of the wrong half alone is 2 * CE_FACTOR * log 2
    probs = torch.tensor([[0.5, 0.5], [p_wrong, 1 - p_wrong], [0.5, 0.5], [1 - p_wrong, p_wrong]])
    h = classifier_health(probs, y_val, y_fit, 1.0)
    assert h["val_ce"] > CE_FACTOR * constant and h["val_acc"] <= h["constant_acc"]
    assert "validation cross-entropy" in h["degenerate"]
    # a barely trained model (just above the constant predictor's cross-entropy) is not flagged
    h = classifier_health(torch.tensor([[0.45, 0.55], [0.55, 0.45], [0.45, 0.55], [0.55, 0.45]]), y_val, y_fit,
                          0.7)
    assert h["degenerate"] is None and h["val_ce"] > constant
    # an accurate model whose one error is saturated: infinite cross-entropy, flagged whatever the accuracy
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    h = classifier_health(probs, y_val, y_fit, 0.1)
    assert h["val_ce"] == math.inf and h["val_acc"] == 0.75 and "probability 0" in h["degenerate"]
    assert CE_FACTOR_ANY > CE_FACTOR
    # non-finite training loss or probabilities
    assert "last training loss is nan" in classifier_health(None, None, y_fit, math.nan)["degenerate"]
    assert "not finite" in classifier_health(torch.full((4, 2), math.nan), y_val, y_fit, 0.1)["degenerate"]


def test_regression_against_the_median_predictor():
    y_fit = [0.0, 1.0, 2.0, 10.0]  # median 1.5 (midpoint of the two middle values)
    y_val = [1.0, 3.0]
    constant = (abs(1.0 - 1.5) + abs(3.0 - 1.5)) / 2
    h = regression_health(0.9, y_val, y_fit)
    assert h["degenerate"] is None and math.isclose(h["constant_mae"], constant, rel_tol=1e-12)
    assert regression_health(MAE_FACTOR * constant * 0.99, y_val, y_fit)["degenerate"] is None
    assert "constant predictor" in regression_health(MAE_FACTOR * constant * 1.01, y_val, y_fit)["degenerate"]
    assert "validation MAE nan" in regression_health(math.nan, y_val, y_fit)["degenerate"]


def test_multilabel_against_the_label_frequency_predictor():
    y_fit = torch.tensor([[1, 0], [1, 1], [0, 0], [1, 0]])  # label frequencies 3/4, 1/4 -> smoothed 4/6, 2/6
    y_val = torch.tensor([[1, 0], [0, 1]])
    p1, p2 = 4 / 6, 2 / 6
    constant = -(math.log(p1) + math.log(1 - p2) + math.log(1 - p1) + math.log(p2)) / 4
    good = multilabel_health(0.5 * constant, 0.9, y_val, y_fit)
    assert good["degenerate"] is None and good["constant_bce"] == pytest.approx(constant)
    # the constant predictor predicts label 1 for every sample: micro F1 of [[1, 0], [1, 0]] = 2 * 1 / (2 + 1 + 1)
    assert good["constant_micro_f1"] == pytest.approx(0.5)
    assert multilabel_health(2.0 * constant, 0.4, y_val, y_fit)["degenerate"].startswith("validation binary")
    assert multilabel_health(2.0 * constant, 0.9, y_val, y_fit)["degenerate"] is None  # over-confident, accurate
    assert multilabel_health(11 * constant, 0.9, y_val, y_fit)["degenerate"] is not None
    assert multilabel_health(float("nan"), 0.9, y_val, y_fit)["degenerate"] == "validation binary cross-entropy nan"
