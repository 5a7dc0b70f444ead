"""CMU-MOSI glue for :class:`deqfusion.training.trainer.Trainer`: split tensors, step functions,
the metric function, and the modality-subset names.

Both MOSI models return ``(prediction (B,), info)``; the step functions add ``lambda_jac * info.jac_loss`` to
the task loss during training and log the Jacobian loss and the solver's step count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..data.mosi import MODALITIES, MosiSplit
from ..metrics.regression import regression_metrics
from ..training.trainer import StepOutput

LETTERS = {"T": "text", "A": "audio", "V": "video"}


def parse_subset(spec: str) -> list[str]:
    """``"T+A+V"``, ``"TAV"``, ``"text,audio"`` or ``"video"`` -> modality names in canonical order."""
    s = spec.strip()
    if not s:
        raise ValueError("empty modality subset")
    parts = [p for p in s.replace("+", ",").split(",") if p]
    names: list[str] = []
    for p in parts:
        if p.lower() in MODALITIES:
            names.append(p.lower())
        elif all(c.upper() in LETTERS for c in p):
            names.extend(LETTERS[c.upper()] for c in p)
        else:
            raise ValueError(f"unknown modality {p!r} in subset {spec!r}; use T, A, V or {list(MODALITIES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"modality listed twice in subset {spec!r}")
    return [m for m in MODALITIES if m in names]


def subset_label(modalities: Sequence[str]) -> str:
    inv = {v: k for k, v in LETTERS.items()}
    return "+".join(inv[m] for m in modalities)


def split_tensors(split: MosiSplit, modalities: Sequence[str]) -> dict[str, Tensor]:
    """A trainer split: one float tensor per modality and ``labels``."""
    out = {m: torch.from_numpy(np.ascontiguousarray(split.features[m])) for m in modalities}
    out["labels"] = torch.from_numpy(np.ascontiguousarray(split.labels))
    return out


def _logs(info) -> dict:
    logs = {"jac_loss": info.jac_loss.detach()}
    if info.forward is not None:
        logs["solver_steps"] = float(info.forward.nstep)
        logs["solver_rel_residual"] = float(info.forward.rel_residual.mean())
    return logs


def _step_output(task, pred: Tensor, y: Tensor, info, lambda_jac: float, training: bool) -> StepOutput:
    """Task loss plus, in training, the weighted Jacobian loss; the fusion's solver statistics as logs."""
    total = task(pred, y)
    if training and lambda_jac:
        total = total + lambda_jac * info.jac_loss
    return StepOutput(total, pred.detach(), y, _logs(info))


def feature_step_fn(modalities: Sequence[str], lambda_jac: float = 0.01, loss: str = "l1"):
    """Step function for :class:`~deqfusion.models.mosi_features.MosiFeatureModel` batches.

    ``loss``: ``"l1"`` (mean absolute error, the usual choice on MOSI features) or ``"mse"`` (``0.5 (y_hat -
    y)^2``, the Cross-Modal BERT loss).
    """
    modalities = list(modalities)
    task = _task_loss(loss)

    def step(model: nn.Module, batch: Mapping[str, Tensor], training: bool) -> StepOutput:
        pred, info = model({m: batch[m] for m in modalities})
        return _step_output(task, pred, batch["labels"], info, lambda_jac, training)

    return step


def bert_step_fn(lambda_jac: float = 0.01, loss: str = "mse"):
    """Step function for :class:`~deqfusion.models.cmbert.CrossModalBert` batches (``input_ids``,
    ``attention_mask``, ``token_type_ids``, ``audio``, ``labels``)."""
    task = _task_loss(loss)

    def step(model: nn.Module, batch: Mapping[str, Tensor], training: bool) -> StepOutput:
        pred, info = model(batch["input_ids"], batch["attention_mask"], batch["audio"],
                           batch.get("token_type_ids"))
        return _step_output(task, pred, batch["labels"], info, lambda_jac, training)

    return step


def _task_loss(name: str):
    if name == "l1":
        return lambda p, y: (p - y).abs().mean()
    if name == "mse":
        return lambda p, y: 0.5 * ((p - y) ** 2).mean()
    raise ValueError(f"loss must be 'l1' or 'mse', got {name!r}")


def metric_fn(predictions: Tensor, targets: Tensor) -> dict:
    return regression_metrics(targets, predictions)
