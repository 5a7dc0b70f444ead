"""One run of a mini-batch experiment: the :class:`~deqfusion.training.minibatch.MinibatchTrainer` in the
runner's layout (``checkpoint.pt`` for resuming, ``best.pt`` for the selected model) and its result in the
runner's keys."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import nn

from ..training.minibatch import MinibatchTrainer, TrainerConfig, TrainingDiverged
from .runner import Run

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"


def trainer_for(run: Run, model: nn.Module, step_fn: Callable, metric_fn: Callable,
                config: TrainerConfig) -> MinibatchTrainer:
    """A trainer writing the run's checkpoints, fingerprinted with the run's fingerprint."""
    return MinibatchTrainer(model, step_fn, metric_fn, config, out_dir=run.dir, fingerprint=run.fingerprint,
                            checkpoint_name=CHECKPOINT)


def fit(run: Run, trainer: MinibatchTrainer, splits: Mapping[str, Mapping], valid: str = "valid") -> dict:
    """Train with selection on ``splits[valid]``, test once on ``splits["test"]``; the trainer's result in the
    runner's keys (``val``, ``train_seconds``, ``solver_steps`` of the test split)."""
    try:
        result = trainer.fit(splits["train"], splits[valid], splits["test"], resume=run.resume)
    except TrainingDiverged as exc:  # a failed run (exit status 3), named
        raise TrainingDiverged(f"{run.label} seed {run.seed}: {exc}") from exc
    result = dict(result)
    result["val"] = result.pop("valid")
    result["train_seconds"] = result.pop("train_time_s")
    result["solver_steps"] = (result["test"] or {}).get("solver_steps")
    return result


def n_params(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())
