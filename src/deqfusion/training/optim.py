"""The optimiser and the learning-rate schedule a :class:`~deqfusion.training.config.TrainConfig` names."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import nn

from .config import EPOCH_SCHEDULES, TrainConfig

__all__ = ["param_groups", "make_optimizer", "lr_factor", "make_scheduler", "per_epoch"]


def param_groups(model: nn.Module, lr: float, weight_decay: float,
                 group_lrs: Mapping[str, float] | None = None) -> list[dict]:
    """Parameter groups: parameters under each submodule prefix in ``group_lrs`` get that learning rate.

    A prefix matches a parameter named ``prefix`` or ``prefix.<anything>``; the first matching prefix wins.
    Parameters that do not require gradients are left out. Raises ``ValueError`` for a prefix that matches no
    trainable parameter.
    """
    group_lrs = dict(group_lrs or {})
    buckets: dict[str, list] = {p: [] for p in group_lrs}
    rest = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        for prefix in group_lrs:
            if name == prefix or name.startswith(prefix + "."):
                buckets[prefix].append(p)
                break
        else:
            rest.append(p)
    empty = [p for p, ps in buckets.items() if not ps]
    if empty:
        raise ValueError(f"no trainable parameters under {empty}; the model's top-level modules are "
                         f"{[n for n, _ in model.named_children()]}")
    groups = [{"name": "default", "params": rest, "lr": lr, "weight_decay": weight_decay}] if rest else []
    groups += [{"name": p, "params": ps, "lr": float(group_lrs[p]), "weight_decay": weight_decay}
               for p, ps in buckets.items()]
    return groups


def make_optimizer(model: nn.Module, config: TrainConfig, groups: list[dict] | None = None) -> torch.optim.Optimizer:
    """``config.optimizer`` (Adam or AdamW) over ``groups`` (default: :func:`param_groups` of ``model`` with
    ``config.group_lrs``), with ``config.lr``, ``config.betas`` and ``config.weight_decay`` where a group does not
    set its own."""
    if groups is None:
        groups = param_groups(model, config.lr, config.weight_decay, config.group_lrs)
    kind = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return kind(groups, lr=config.lr, betas=tuple(config.betas), weight_decay=config.weight_decay)


def per_epoch(config: TrainConfig) -> bool:
    """Whether ``config.schedule`` is stepped once per epoch (True) or after every optimiser step taken."""
    return config.schedule in EPOCH_SCHEDULES


def lr_factor(config: TrainConfig, epoch: int) -> float:
    """The multiplier of ``config.lr`` used for epoch ``epoch + 1`` under ``config.schedule="warmup_cosine"``
    (``epoch`` = epochs already run): ``(epoch + 1) / warmup_epochs`` during the warm-up, then
    ``f + (1 - f) (1 + cos(pi t)) / 2`` with ``t`` going from 0 at the end of the warm-up to 1 at the last epoch
    and ``f = final_lr / lr``."""
    w = config.warmup_epochs
    if epoch < w:
        return (epoch + 1) / w
    span = max(config.epochs - 1 - w, 1)
    t = min((epoch - w) / span, 1.0)
    floor = config.final_lr / config.lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def _step_factor(kind: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if kind != "constant" and step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "warmup_linear":
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
        return 1.0

    return f


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int = 1):
    """The learning-rate scheduler ``config.schedule`` names, on ``optimizer``. Epoch schedules (:func:`per_epoch`)
    count epochs; the others count optimiser steps, ``steps_per_epoch * config.epochs`` in all."""
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    if config.schedule == "warmup_cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(config, epoch))
    total = steps_per_epoch * config.epochs
    warmup = max(1, int(round(config.warmup_fraction * total))) if config.schedule != "constant" else 0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _step_factor(config.schedule, warmup, total))
