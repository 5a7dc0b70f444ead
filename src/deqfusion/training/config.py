"""The trainer's settings: one dataclass for full-batch and mini-batch training.

Full-batch training is ``batch_size=None`` (every training sample in one batch, one optimiser step per epoch, no
shuffling); the optimiser (Adam or AdamW, weight decay, betas, per-submodule learning rates) and the learning-rate
schedule are fields like any other (see :mod:`deqfusion.training.optim`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .guard import GuardConfig

__all__ = ["TrainConfig", "OPTIMIZERS", "SCHEDULES", "EPOCH_SCHEDULES"]

#: optimisers of :class:`TrainConfig`
OPTIMIZERS = ("adam", "adamw")
#: learning-rate schedules of :class:`TrainConfig`
SCHEDULES = ("constant", "step", "warmup_cosine", "warmup_constant", "warmup_linear")
#: the schedules defined in epochs, stepped once per epoch; the others are defined in optimiser steps and stepped
#: after every optimiser step that was taken
EPOCH_SCHEDULES = ("step", "warmup_cosine")


@dataclass
class TrainConfig:
    """Optimisation, evaluation, selection and checkpointing settings of :class:`~deqfusion.training.trainer.Trainer`.

    Attributes:
        epochs: number of epochs (the most, with early stopping).
        batch_size: training batch size (the global batch under ``torchrun``); None: full batch (all training
            samples in one batch, in storage order).
        eval_batch_size: evaluation batch size (None: ``batch_size``; full batch when that is None too).
        shuffle_seed: seed of the generator that shuffles the training samples every epoch (mini-batch only).
        drop_last: leave out the last, incomplete training batch of an epoch.
        optimizer: ``"adam"`` or ``"adamw"``; ``lr``, ``weight_decay``, ``betas`` its settings.
        group_lrs: submodule name prefix -> learning rate, for parameter groups with their own rates.
        schedule: the learning-rate schedule (:data:`SCHEDULES`): ``"constant"``; ``"step"`` (StepLR(``step_size``,
            ``gamma``), per epoch); ``"warmup_cosine"`` (linear warm-up over ``warmup_epochs`` epochs, then a cosine
            decay to ``final_lr`` at the last epoch, per epoch); ``"warmup_constant"`` and ``"warmup_linear"``
            (linear warm-up over ``warmup_fraction`` of all optimiser steps, then constant or linear decay to 0, per
            step).
        clip_norm: gradient-norm clipping threshold (None: none).
        eval_every: score the validation split every this many epochs (and after the last epoch).
        select: the validation score that selects the model (``"loss"``, or a name the metric function returns).
        select_mode: ``"min"`` or ``"max"``; None: from the name (losses and cross-entropies lower, others higher).
        tie_break: a second score that breaks exact ties of ``select`` (direction from its name), or None.
        min_delta: an improvement must exceed this to count.
        patience: stop after this many epochs without improvement (None: never stop early).
        min_epochs: never stop early before this epoch.
        reference_protocol: also score a reference (test) split at every evaluation and record its best scores,
            labelled; never used for training or selection.
        checkpoint_every: write the checkpoint every this many epochs (and at the end) when a path is given.
        guard, guard_max_residual, guard_max_consecutive: the divergence guard's policy (``"skip"``, ``"phantom"``,
            ``"raise"``, or None for none), residual bound and limit of skipped steps in a row.
        device, preload: where training runs; ``preload`` moves the splits there once.
        progress, desc: tqdm bars on stderr, and their label.
        ddp_find_unused_parameters: passed to ``DistributedDataParallel``.
    """

    epochs: int = 100
    batch_size: int | None = None
    eval_batch_size: int | None = None
    shuffle_seed: int = 0
    drop_last: bool = False
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)
    group_lrs: dict = field(default_factory=dict)
    schedule: str = "constant"
    step_size: int = 500
    gamma: float = 0.2
    warmup_epochs: int = 0
    final_lr: float = 0.0
    warmup_fraction: float = 0.0
    clip_norm: float | None = None
    eval_every: int = 1
    select: str = "loss"
    select_mode: str | None = None
    tie_break: str | None = None
    min_delta: float = 0.0
    patience: int | None = None
    min_epochs: int = 0
    reference_protocol: bool = False
    checkpoint_every: int = 1
    guard: str | None = "skip"
    guard_max_residual: float | None = None
    guard_max_consecutive: int = 25
    device: str = "cpu"
    preload: bool = True
    progress: bool = False
    desc: str = "train"
    ddp_find_unused_parameters: bool = False

    def __post_init__(self):
        for ok, message in self._checks():
            if not ok:
                raise ValueError(message)
        if self.guard is not None:
            GuardConfig(self.guard, self.guard_max_residual, self.guard_max_consecutive)  # checks the values

    def _checks(self) -> list[tuple[bool, str]]:
        return [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (all(b is None or b >= 1 for b in (self.batch_size, self.eval_batch_size)),
             "batch sizes must be >= 1 (or None: full batch)"),
            (self.eval_every >= 1, f"eval_every must be >= 1, got {self.eval_every}"),
            (self.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {self.checkpoint_every}"),
            (self.patience is None or self.patience >= 1, f"patience must be >= 1 or None, got {self.patience}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
            (0 <= self.warmup_epochs < self.epochs,
             f"warmup_epochs must lie in [0, epochs), got {self.warmup_epochs} with epochs {self.epochs}"),
            (0.0 <= self.final_lr <= self.lr, f"final_lr must lie in [0, lr], got {self.final_lr} with lr {self.lr}"),
            (0.0 <= self.warmup_fraction < 1.0, f"warmup_fraction must lie in [0, 1), got {self.warmup_fraction}"),
            (self.select_mode in (None, "min", "max"),
             f"select_mode must be 'min', 'max' or None, got {self.select_mode!r}"),
            (isinstance(self.select, str) and bool(self.select), f"bad selection key {self.select!r}"),
        ]
