import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from deqfusion.metrics.classification import (
    accuracy,
    classification_metrics,
    confusion_matrix,
    f1_score,
    roc_auc_binary,
)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_matches_sklearn(seed, num_classes):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    y = rng.integers(0, num_classes, n)
    p = rng.integers(0, num_classes, n)
    assert accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p))
    assert np.array_equal(confusion_matrix(y, p, num_classes),
                          skm.confusion_matrix(y, p, labels=list(range(num_classes))))
    for avg in ("macro", "weighted"):
        ours = f1_score(y, p, average=avg)
        ref = skm.f1_score(y, p, average=avg, zero_division=0)
        assert ours == pytest.approx(ref), avg
        labels = list(range(num_classes))
        ours_all = f1_score(y, p, average=avg, num_classes=num_classes)
        ref_all = skm.f1_score(y, p, average=avg, labels=labels, zero_division=0)
        assert ours_all == pytest.approx(ref_all), avg
    if num_classes == 2:
        assert f1_score(y, p) == pytest.approx(skm.f1_score(y, p, zero_division=0))


@pytest.mark.parametrize("seed", range(6))
def test_roc_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 40
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    scores = np.round(rng.random(n), 1)  # many ties
    assert roc_auc_binary(y, scores) == pytest.approx(skm.roc_auc_score(y, scores))
    probs = np.stack([1 - scores, scores], 1)
    assert roc_auc_binary(torch.tensor(y), torch.tensor(probs)) == pytest.approx(skm.roc_auc_score(y, scores))


def test_roc_auc_extremes_and_errors():
    assert roc_auc_binary([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc_binary([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc_binary([0, 1], [0.5, 0.5]) == 0.5
    with pytest.raises(ValueError, match="single class"):
        roc_auc_binary([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="shape"):
        roc_auc_binary([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        roc_auc_binary([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="labels 0 and 1"):
        roc_auc_binary([0, 2], [0.1, 0.2])


def test_input_errors():
    with pytest.raises(ValueError, match="y_pred has 2"):
        accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="integer"):
        accuracy([0.5, 1], [0, 1])
    with pytest.raises(ValueError, match="no samples"):
        accuracy([], [])
    with pytest.raises(ValueError, match="unknown average"):
        f1_score([0, 1], [0, 1], average="micro-ish")
    with pytest.raises(ValueError, match="below num_classes"):
        confusion_matrix([0, 3], [0, 1], num_classes=2)


def test_classification_metrics_binary_and_multiclass():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    probs = rng.dirichlet([1, 1], 50)
    m = classification_metrics(y, torch.tensor(probs))
    pred = probs.argmax(1)
    assert set(m) == {"acc", "f1", "f1_macro", "auc"}
    assert m["acc"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, probs[:, 1]))
    y5 = rng.integers(0, 5, 80)
    p5 = rng.dirichlet([1] * 5, 80)
    m5 = classification_metrics(y5, p5)
    assert set(m5) == {"acc", "f1_weighted", "f1_macro"}
    assert m5["f1_weighted"] == pytest.approx(
        skm.f1_score(y5, p5.argmax(1), average="weighted", labels=list(range(5)), zero_division=0))
    assert all(0.0 <= v <= 1.0 for v in m5.values())
    with pytest.raises(ValueError, match="num_classes=3"):
        classification_metrics(y5, p5, num_classes=3)
