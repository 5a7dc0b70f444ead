"""The fixed protocol: train on all training samples for a recipe's set number of epochs, then score the final
model once on the test samples.

Nothing is selected, so nothing can be tuned on the test samples: the test data are obtained (``load_test`` is
called) only after the last training epoch, and scored exactly once. This is how the MM-Dynamics recipe
(1000 full-batch epochs, final model) is run without its test-set selection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from torch import Tensor, nn

from .config import TrainConfig
from .objective import evaluate, fit
from .trainer import TrainResult

__all__ = ["fit_then_test"]


def fit_then_test(model: nn.Module, x_train: Sequence[Tensor], y_train: Tensor, config: TrainConfig,
                  loss_fn: Callable, probs_fn: Callable, metrics_fn: Callable,
                  load_test: Callable[[], tuple[Sequence[Tensor], Tensor]], *,
                  checkpoint_path: str | Path | None = None, resume: bool = False, fingerprint: dict | None = None,
                  progress: Callable[[dict], None] | None = None) -> tuple[TrainResult, dict]:
    """Train ``model`` on ``(x_train, y_train)`` for ``config.epochs`` epochs (no validation, no early
    stopping), then call ``load_test()`` once and score the final model on what it returns.

    ``config`` must not ask for selection: ``patience`` must be None and ``reference_protocol`` False.
    Returns the :class:`~deqfusion.training.trainer.TrainResult` (``best_epoch == epochs``) and the test scores
    (:func:`~deqfusion.training.objective.evaluate`).
    """
    if config.reference_protocol:
        raise ValueError("the fixed protocol scores the test samples once, after training: reference_protocol "
                         "must be off")
    if config.patience is not None:
        raise ValueError("the fixed protocol trains a set number of epochs: patience must be None")
    result = fit(model, x_train, y_train, None, None, config, loss_fn, probs_fn, metrics_fn,
                 checkpoint_path=checkpoint_path, resume=resume, fingerprint=fingerprint, progress=progress)
    x_test, y_test = load_test()
    test = evaluate(model, x_test, y_test, loss_fn, probs_fn, metrics_fn)
    return result, test
