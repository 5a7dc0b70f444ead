import pytest
import torch

from deqfusion.models.mmdynamics import MMDynamicsClassifier, mmdynamics_objective
from deqfusion.training.config import TrainConfig
from deqfusion.training.fixed import fit_then_test
from deqfusion.training.objective import evaluate, fit
from deqfusion.training.seed import seed_everything


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    return [torch.rand(n, 6, generator=g) + 0.5 * y[:, None], torch.rand(n, 4, generator=g)], y


def test_test_data_are_obtained_only_after_the_last_epoch_and_scored_once():
    x_tr, y_tr = _data(40, 0)
    x_te, y_te = _data(30, 1)
    events = []

    def progress(row):
        events.append(("epoch", row["epoch"]))

    def load_test():
        events.append(("load_test", None))
        return x_te, y_te

    objective = mmdynamics_objective(2)
    loss_fn, probs_fn, metrics_fn = objective

    def counting_probs(out):
        events.append(("score", out.logits.shape[0]))
        return probs_fn(out)

    seed_everything(0)
    model = MMDynamicsClassifier([6, 4], 2, hidden=8)
    cfg = TrainConfig(epochs=15, optimizer="adam", lr=1e-2, eval_every=5, patience=None)
    result, test = fit_then_test(model, x_tr, y_tr, cfg, loss_fn, counting_probs, metrics_fn, load_test,
                                 progress=progress)
    # every epoch ran before the test data were asked for; afterwards exactly one scoring, on the 30 test samples
    assert events[:15] == [("epoch", e) for e in range(1, 16)]
    assert events[15:] == [("load_test", None), ("score", 30)]
    assert result.epochs_run == 15 and result.best_epoch == 15
    # the scores are the final model's: the same training followed by a plain evaluation gives them
    seed_everything(0)
    again = MMDynamicsClassifier([6, 4], 2, hidden=8)
    fit(again, x_tr, y_tr, None, None, cfg, *objective)
    assert evaluate(again, x_te, y_te, *objective) == test


def test_selection_settings_are_refused():
    model = MMDynamicsClassifier([6, 4], 2, hidden=8)
    x, y = _data(10, 0)

    def never():
        raise AssertionError("the test data must not be read")

    with pytest.raises(ValueError, match="patience must be None"):
        fit_then_test(model, x, y, TrainConfig(epochs=3, patience=2), *mmdynamics_objective(2), never)
    with pytest.raises(ValueError, match="reference_protocol must be off"):
        fit_then_test(model, x, y, TrainConfig(epochs=3, reference_protocol=True), *mmdynamics_objective(2),
                      never)
