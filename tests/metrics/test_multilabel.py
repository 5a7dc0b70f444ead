import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from deqfusion.metrics.multilabel import binarize, multilabel_f1


def _sk(pred, true, average):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f1_score(true, pred, average=average, zero_division=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    true = (rng.random((50, 7)) < 0.3).astype(np.int64)
    true[:, 6] = 0  # a label that never occurs
    true[3] = 0  # a sample with no label
    logits = rng.normal(size=(50, 7)) + 1.5 * (true - 0.5)
    logits[3] = -5.0  # ... and no prediction
    out = multilabel_f1(torch.tensor(logits), torch.tensor(true))
    pred = (1 / (1 + np.exp(-logits)) > 0.5).astype(np.int64)
    for avg in ("micro", "macro", "samples", "weighted"):
        assert out[f"{avg}_f1"] == pytest.approx(_sk(pred, true, avg), abs=1e-12), avg


def test_probabilities_and_threshold():
    probs = torch.tensor([[0.9, 0.5, 0.2], [0.6, 0.7, 0.8]])
    true = torch.tensor([[1, 1, 0], [0, 1, 1]])
    # 0.5 is not above the threshold
    assert binarize(probs, 0.5, from_logits=False).tolist() == [[True, False, False], [True, True, True]]
    out = multilabel_f1(probs, true, from_logits=False)
    pred = binarize(probs, 0.5, from_logits=False).int().numpy()
    assert out["micro_f1"] == pytest.approx(_sk(pred, true.numpy(), "micro"))
    # the same predictions from logits
    logits = torch.logit(probs.double())
    assert multilabel_f1(logits, true) == pytest.approx(out)
    # a higher threshold predicts fewer positives
    strict = multilabel_f1(probs, true, threshold=0.75, from_logits=False)
    assert strict != out


def test_perfect_and_worst():
    true = torch.tensor([[1, 0], [0, 1], [1, 1]])
    perfect = multilabel_f1(true.float() * 20 - 10, true)
    assert all(v == pytest.approx(1.0) for v in perfect.values())
    worst = multilabel_f1(10 - true.float() * 20, true)
    assert all(v == 0.0 for v in worst.values())


def test_bad_inputs():
    with pytest.raises(ValueError, match="samples, labels"):
        multilabel_f1(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="multi-hot"):
        multilabel_f1(torch.zeros(3, 2), torch.full((3, 2), 2))
    with pytest.raises(ValueError, match="empty"):
        multilabel_f1(torch.zeros(0, 2), torch.zeros(0, 2))
    with pytest.raises(ValueError, match="threshold"):
        multilabel_f1(torch.zeros(3, 2), torch.zeros(3, 2), threshold=1.0)
