"""Classifier objectives on lists of modality tensors, for the trainer.

An *objective* is ``(loss_fn, probs_fn, metrics_fn)``: the model is called on a list of modality tensors (None for a
modality absent from every sample), ``loss_fn(out, y) -> (loss, parts)`` gives the loss to minimise and a dict of
its parts (floats, ``"loss"`` among them), ``probs_fn(out) -> (n, C)`` the class probabilities and
``metrics_fn(y, probs) -> dict`` the metrics. :func:`objective_fns` turns it into the trainer's step and metric
functions, :func:`fit` trains with :class:`~deqfusion.training.trainer.Trainer` on such inputs (full batch unless
``config.batch_size`` says otherwise), :func:`evaluate` scores a model once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from .config import TrainConfig
from .health import classifier_health
from .seed import rng_state, set_rng_state
from .trainer import StepOutput, Trainer, TrainResult, merge_scores, score

__all__ = ["inputs_split", "objective_fns", "fit", "evaluate", "validation_health"]

#: the key of the labels in :func:`inputs_split`
LABELS = "y"


def inputs_split(xs: Sequence[Tensor | None], y: Tensor) -> dict:
    """A trainer split ``{"x0": xs[0], "x1": xs[1], ..., "y": y}``."""
    return {**{f"x{i}": x for i, x in enumerate(xs)}, LABELS: y}


def _inputs(batch: dict) -> list:
    return [batch[f"x{i}"] for i in range(len(batch) - 1)]


def objective_fns(loss_fn: Callable, probs_fn: Callable, metrics_fn: Callable) -> tuple[Callable, Callable]:
    """``(step_fn, metric_fn)`` of the trainer for an objective: the step's logs are the loss parts (but
    ``"loss"``) and, for DEQ fusions, the solver's step count (and, in evaluation, its largest relative residual);
    its predictions are the class probabilities (in evaluation only)."""

    def step_fn(model: nn.Module, batch: dict, training: bool) -> StepOutput:
        out = model(_inputs(batch))
        y = batch[LABELS]
        loss, parts = loss_fn(out, y)
        logs = {k: v for k, v in parts.items() if k != "loss"}
        info = getattr(out, "info", None)
        if info is not None and getattr(info, "forward", None) is not None:
            logs["solver_steps"] = int(info.forward.nstep)
            if not training:
                logs["solver_rel_residual_max"] = float(info.forward.rel_residual.max())
        return StepOutput(loss, None if training else probs_fn(out), y, logs)

    def metric_fn(probs: Tensor, y: Tensor) -> dict:
        return metrics_fn(y, probs)

    return step_fn, metric_fn


def evaluate(model: nn.Module, xs: Sequence[Tensor | None], y: Tensor, loss_fn: Callable, probs_fn: Callable,
             metrics_fn: Callable) -> dict:
    """Score ``model`` (in eval mode, no gradients) on one full batch: ``"loss"``, the metrics, the loss parts and,
    for DEQ fusions, the solver's step count and largest relative residual."""
    step_fn, metric_fn = objective_fns(loss_fn, probs_fn, metrics_fn)
    device = next(iter(model.parameters())).device
    means, metrics, _ = score(model, inputs_split(xs, y), step_fn, metric_fn, None, device)
    return merge_scores(means, metrics)


def validation_health(model: nn.Module, x_val, y_val, y_fit: Tensor, result: TrainResult,
                      probs_fn: Callable) -> dict:
    """:func:`~deqfusion.training.health.classifier_health` of the model (the selected one) on the validation
    part (None: none), with the last training loss of ``result``; every RNG state is left as it was."""
    last_loss = next((h["train_loss"] for h in reversed(result.history) if "train_loss" in h), None)
    probs_val = None
    if x_val is not None:
        saved = rng_state()
        was_training = model.training
        try:
            model.eval()
            with torch.no_grad():
                probs_val = probs_fn(model(list(x_val)))
        finally:
            model.train(was_training)
            set_rng_state(saved)
    return classifier_health(probs_val, y_val, y_fit, last_loss)


def fit(model: nn.Module, x_fit: Sequence[Tensor | None], y_fit: Tensor, x_val: Sequence[Tensor | None] | None,
        y_val: Tensor | None, config: TrainConfig, loss_fn: Callable, probs_fn: Callable, metrics_fn: Callable, *,
        x_test: Sequence[Tensor | None] | None = None, y_test: Tensor | None = None,
        checkpoint_path: str | Path | None = None, resume: bool = False, fingerprint: dict | None = None,
        progress: Callable[[dict], None] | None = None) -> TrainResult:
    """Train ``model`` on ``(x_fit, y_fit)`` with :class:`~deqfusion.training.trainer.Trainer`, selecting on
    ``(x_val, y_val)`` (both None: no validation, the model after the last epoch); ``(x_test, y_test)`` only for
    ``config.reference_protocol`` (never scored otherwise). The result's ``health`` is
    :func:`validation_health`'s. On return the model holds the selected weights."""
    if (x_val is None) != (y_val is None):
        raise ValueError("give both x_val and y_val, or neither")
    if config.reference_protocol and (x_test is None or y_test is None):
        raise ValueError("reference_protocol needs x_test and y_test")
    step_fn, metric_fn = objective_fns(loss_fn, probs_fn, metrics_fn)
    trainer = Trainer(model, step_fn, metric_fn, config, checkpoint=checkpoint_path, fingerprint=fingerprint)
    val = None if x_val is None else inputs_split(x_val, y_val)
    reference = inputs_split(x_test, y_test) if config.reference_protocol else None
    result = trainer.fit(inputs_split(x_fit, y_fit), val, resume=resume, reference=reference, progress=progress)
    result.health = validation_health(model, x_val, y_val, y_fit, result, probs_fn)
    return result
