import math

import numpy as np
import pytest
import torch

from deqfusion.metrics import regression as R

# hand-made example: labels with a zero, predictions with a zero
Y = [-2.4, -0.6, 0.0, 0.4, 1.6, 2.8, -1.2, 0.0]
P = [-1.9, 0.3, 0.2, -0.1, 1.4, 3.7, -0.0, -0.5]


def test_acc2_conventions_by_hand():
    # neg_nonneg: true  [0,0,1,1,1,1,0,1]  pred (p >= 0) [0,1,1,0,1,1,1,0] -> agree at 0,2,4,5 = 4/8
    assert R.acc2(Y, P, "neg_nonneg") == pytest.approx(4 / 8)
    # neg_pos: drop true zeros (idx 2, 7): true [0,0,1,1,1,0] pred (p > 0) [0,1,0,1,1,0] -> 4/6
    assert R.acc2(Y, P, "neg_pos") == pytest.approx(4 / 6)
    # ref: true (y > 0) [0,0,0,1,1,1,0,0] pred (p > 0) [0,1,1,0,1,1,0,0] -> agree at 0,4,5,6,7 = 5/8
    assert R.acc2(Y, P, "ref") == pytest.approx(5 / 8)
    with pytest.raises(ValueError, match="unknown Acc-2 convention"):
        R.acc2(Y, P, "bogus")


def test_weighted_f1_by_hand_and_argument_order():
    t = np.array([1, 1, 1, 1, 0, 0])
    p = np.array([1, 1, 1, 0, 0, 1])
    # class 1: tp 3, fp 1, fn 1 -> 6/8; class 0: tp 1, fp 1, fn 1 -> 2/4; weights 4 and 2
    want = (0.75 * 4 + 0.5 * 2) / 6
    assert R.f1_weighted(t, p) == pytest.approx(want)
    # swapped arguments weight by predicted counts (4 and 2 here too) -> same; make an asymmetric case
    t2 = np.array([1, 1, 1, 1, 1, 0])
    p2 = np.array([1, 1, 0, 0, 0, 0])
    # right order: class 1 tp2 fp0 fn3 -> 4/7 (w5); class 0 tp1 fp3 fn0 -> 2/5 (w1)
    right = (4 / 7 * 5 + 2 / 5 * 1) / 6
    # swapped: weights by p2 counts (class 0: 4, class 1: 2)
    swapped = (4 / 7 * 2 + 2 / 5 * 4) / 6
    assert R.f1_weighted(t2, p2) == pytest.approx(right)
    assert R.f1_weighted(p2, t2) == pytest.approx(swapped)
    assert right != pytest.approx(swapped)


def test_weighted_f1_matches_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    t = rng.integers(0, 2, 200)
    p = rng.integers(0, 2, 200)
    assert R.f1_weighted(t, p) == pytest.approx(sk.f1_score(t, p, average="weighted"))


def test_mae_pearson_acc7_by_hand():
    assert R.mae(Y, P) == pytest.approx(np.mean(np.abs(np.array(Y) - np.array(P))))
    assert R.mae([0, 1], [1, 3]) == pytest.approx(1.5)
    assert R.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert R.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert R.pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert math.isnan(R.pearson([1, 2, 3], [1, 1, 1]))
    # acc7: clip to [-3, 3] then round half to even: 3.7 -> 3, 2.5 -> 2, -3.4 -> -3, 0.5 -> 0
    assert R.acc7([3.0, 2.0, -3.0, 0.0], [3.7, 2.5, -3.4, 0.5]) == 1.0
    assert R.acc7([1.0, -1.0], [1.6, -1.4]) == 0.5
    # acc5 clips to [-2, 2]
    assert R.acc5([2.0, -2.0], [2.9, -2.6]) == 1.0
    assert R.acc7([2.0, -2.0], [2.9, -2.6]) == 0.0


def test_regression_metrics_dict_and_input_checks():
    m = R.regression_metrics(torch.tensor(Y), np.array(P))
    assert m["n"] == 8 and m["n_nonzero"] == 6
    assert m["acc2_neg_pos"] == pytest.approx(4 / 6)
    for c in R.ACC2_CONVENTIONS:
        assert f"f1_{c}" in m
    with pytest.raises(ValueError, match="3 values"):
        R.regression_metrics([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        R.mae([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="empty"):
        R.mae([], [])
