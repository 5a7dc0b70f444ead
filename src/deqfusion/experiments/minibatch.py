"""One run of a mini-batch experiment: the :class:`~deqfusion.training.trainer.Trainer` writing the run's
checkpoint (``checkpoint.pt``: for resuming, and the selected model) and its result in the runner's keys."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import nn

from ..training.config import TrainConfig
from ..training.trainer import Trainer, TrainingDiverged
from .runner import Run


def trainer_for(run: Run, model: nn.Module, step_fn: Callable, metric_fn: Callable, config: TrainConfig,
                groups: list[dict] | None = None) -> Trainer:
    """A trainer writing the run's checkpoint, fingerprinted with the run's fingerprint."""
    return Trainer(model, step_fn, metric_fn, config, checkpoint=run.checkpoint, fingerprint=run.fingerprint,
                   groups=groups)


def fit(run: Run, trainer: Trainer, splits: Mapping[str, Mapping], valid: str = "valid") -> dict:
    """Train with selection on ``splits[valid]``, test once on ``splits["test"]``; the trainer's result as a dict
    plus ``solver_steps`` of the test split. The model holds the selected weights on return."""
    try:
        result = trainer.fit(splits["train"], splits[valid], splits["test"], resume=run.resume)
    except TrainingDiverged as exc:  # a failed run (exit status 3), named
        raise TrainingDiverged(f"{run.label} seed {run.seed}: {exc}") from exc
    out = result.to_dict()
    out["solver_steps"] = (out["test"] or {}).get("solver_steps")
    return out


def n_params(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())
