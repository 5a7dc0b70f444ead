"""Full-batch training with validation-based selection, for small tabular multimodal data sets.

The protocol (honest by construction):

1. :func:`stratified_split` carves a validation part out of the training files;
2. :func:`fit` trains on the rest, the whole fitting set as one batch per epoch (Adam, StepLR, gradient-norm
   clipping, as in the reference; or a warm-up + cosine schedule), scores the validation part every
   ``eval_every`` epochs, keeps the best model by the selection score and stops early after ``patience`` epochs
   without improvement;
3. the caller evaluates the test set once, on the selected model (:func:`evaluate`).

The reference's protocol (score the *test* set during training and keep the best test score over epochs) is
available with ``reference_protocol=True``: it is recorded separately as ``reference_best_test`` and never
influences training or selection.

:func:`fit` checkpoints atomically (model, optimiser, scheduler, RNG states, epoch, best model, history) and
resumes from such a checkpoint exactly: a resumed run gives the same numbers as an uninterrupted one.

The trainer knows nothing about the model: it calls ``model(xs)`` and the given ``loss_fn(out, y) -> (loss,
parts)``, ``probs_fn(out) -> (B, C)`` and ``metrics_fn(y, probs) -> dict``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import UserError
from .checkpoint import load_checkpoint, load_state_into, require_entries, save_checkpoint
from .guard import DivergenceGuard, GuardConfig
from .health import classifier_health
from .seed import rng_state, set_rng_state

log = logging.getLogger(__name__)

__all__ = ["FullBatchConfig", "SCHEDULES", "lr_factor", "make_scheduler", "FitResult", "stratified_split", "evaluate",
           "fit", "selection_direction"]

#: learning-rate schedules of :class:`FullBatchConfig`
SCHEDULES = ("step", "warmup_cosine")


@dataclass
class FullBatchConfig:
    """Optimisation and selection settings (defaults: the reference's ROSMAP/BRCA optimiser).

    Attributes:
        epochs: maximum number of epochs (one full-batch step each).
        lr, weight_decay: Adam settings.
        schedule: learning-rate schedule, stepped once per epoch: ``"step"`` (StepLR(``step_size``, ``gamma``),
            the reference's) or ``"warmup_cosine"`` (linear warm-up from ``lr / warmup_epochs`` to ``lr`` over
            ``warmup_epochs`` epochs, then cosine decay from ``lr`` to ``final_lr`` at epoch ``epochs``).
        step_size, gamma: StepLR settings (``schedule="step"`` only).
        warmup_epochs, final_lr: warm-up length and final learning rate (``schedule="warmup_cosine"`` only).
        clip_norm: gradient-norm clipping threshold (None: no clipping).
        eval_every: score the validation part every this many epochs (and after the last epoch).
        patience: stop after this many epochs without a better selection score (None: never stop early).
        min_epochs: never stop before this epoch.
        select: selection score: ``"ce"`` (validation cross-entropy of the fused classifier, lower is better)
            or a metric name from ``metrics_fn`` such as ``"acc"`` or ``"auc"`` (higher is better).
        tie_break: a second score that breaks exact ties of ``select`` (same direction rules), or None.
        reference_protocol: also score the test set at every evaluation and record the best (labelled).
        checkpoint_every: write a checkpoint every this many epochs (and at the end) when a path is given.
        guard, guard_max_residual, guard_max_consecutive: the divergence guard's policy (``"skip"``,
            ``"phantom"``, ``"raise"``, or None for no guard), residual bound and limit of skipped epochs in a row
            (see :mod:`deqfusion.training.guard`); events are counted in ``FitResult.guard``.
    """

    epochs: int = 1000
    lr: float = 1e-4
    weight_decay: float = 1e-4
    schedule: str = "step"
    step_size: int = 500
    gamma: float = 0.2
    warmup_epochs: int = 0
    final_lr: float = 0.0
    clip_norm: float | None = 30.0
    eval_every: int = 10
    patience: int | None = None
    min_epochs: int = 0
    select: str = "ce"
    tie_break: str | None = None
    reference_protocol: bool = False
    checkpoint_every: int = 100
    guard: str | None = "skip"
    guard_max_residual: float | None = None
    guard_max_consecutive: int = 25

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must lie in [0, epochs), got {self.warmup_epochs} with epochs "
                             f"{self.epochs}")
        if not 0.0 <= self.final_lr <= self.lr:
            raise ValueError(f"final_lr must lie in [0, lr], got {self.final_lr} with lr {self.lr}")



def lr_factor(config: FullBatchConfig, epoch: int) -> float:
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


def make_scheduler(optimizer: torch.optim.Optimizer, config: FullBatchConfig):
    """The per-epoch learning-rate scheduler ``config.schedule`` names, on ``optimizer``."""
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(config, epoch))


@dataclass
class FitResult:
    """What :func:`fit` returns. ``best_state`` is the selected model's state dict (already loaded)."""

    best_epoch: int
    best_score: float
    best_val: dict
    epochs_run: int
    stopped_early: bool
    history: list[dict]
    seconds: float
    seconds_per_epoch: float
    cpu_seconds: float = 0.0
    best_state: dict = field(repr=False, default_factory=dict)
    reference_best_test: dict | None = None
    resumed_from: int | None = None
    guard: dict | None = None
    health: dict | None = None

    def summary(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("best_state", "history")}
        return out


def selection_direction(key: str) -> int:
    """+1 when higher is better, -1 when lower is better (losses and cross-entropies)."""
    low = key.lower()
    return -1 if (low in ("ce", "nll") or "loss" in low or low.startswith("ce_")) else 1


def stratified_split(y: Tensor, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Split sample indices into (fit, validation), keeping class proportions.

    Each class with ``n`` samples gives ``round(n * val_fraction)`` to validation, at least 1 when ``n >= 2``
    and never all of them. Deterministic in ``seed`` (independent of the global RNG). Both index tensors are
    sorted.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    y = torch.as_tensor(y).long().cpu()
    gen = torch.Generator().manual_seed(int(seed))
    fit_idx, val_idx = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        n = idx.numel()
        k = int(round(n * val_fraction))
        k = max(k, 1) if n >= 2 else 0
        k = min(k, n - 1)
        val_idx.append(idx[:k])
        fit_idx.append(idx[k:])
    fit_t, val_t = torch.cat(fit_idx).sort().values, torch.cat(val_idx).sort().values
    if val_t.numel() == 0:
        raise ValueError("validation split is empty: too few samples for this val_fraction")
    return fit_t, val_t


@torch.no_grad()
def _score(model: nn.Module, xs: Sequence[Tensor], y: Tensor, loss_fn: Callable, probs_fn: Callable,
           metrics_fn: Callable) -> tuple[dict, dict]:
    was_training = model.training
    model.eval()
    try:
        out = model(list(xs))
        _, parts = loss_fn(out, y)
        metrics = dict(metrics_fn(y, probs_fn(out)))
        extra = dict(parts)
        info = getattr(out, "info", None)
        if info is not None and getattr(info, "forward", None) is not None:
            extra["solver_steps"] = int(info.forward.nstep)
            extra["solver_rel_residual_max"] = float(info.forward.rel_residual.max())
    finally:
        model.train(was_training)
    return metrics, extra


def evaluate(model: nn.Module, xs: Sequence[Tensor], y: Tensor, loss_fn: Callable, probs_fn: Callable,
             metrics_fn: Callable) -> dict:
    """Score ``model`` (in eval mode, no gradients) on one full batch: the metrics, the loss parts and, for
    DEQ fusions, the solver's step count and largest relative residual (all floats)."""
    metrics, extra = _score(model, xs, y, loss_fn, probs_fn, metrics_fn)
    return {**metrics, **extra}


def _better(score: float, tie: float | None, best: float | None, best_tie: float | None, key: str,
            tie_key: str | None) -> bool:
    if best is None:
        return True
    s, b = selection_direction(key) * score, selection_direction(key) * best
    if s > b:
        return True
    if s == b and tie_key is not None and tie is not None and best_tie is not None:
        return selection_direction(tie_key) * tie > selection_direction(tie_key) * best_tie
    return False


def _clone_state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _check_selection_keys(model, x_val, y_val, config, loss_fn, probs_fn, metrics_fn) -> None:
    """Before any training: score the untrained model once (RNG states restored afterwards, so the run is the
    one it would have been) and refuse a selection or tie-break key that is not among the validation scores."""
    saved = rng_state()
    try:
        names = evaluate(model, x_val, y_val, loss_fn, probs_fn, metrics_fn)
    finally:
        set_rng_state(saved)
    for what, key in (("selection", config.select), ("tie-break", config.tie_break)):
        if key is not None and key not in names:
            scores = sorted(k for k in names if not k.startswith("solver_"))
            raise UserError(f"{what} score {key!r} is not among the validation scores of this model and data; "
                            f"choose one of {', '.join(scores)}")


def fit(model: nn.Module, x_fit: Sequence[Tensor], y_fit: Tensor, x_val: Sequence[Tensor] | None,
        y_val: Tensor | None,
        config: FullBatchConfig, loss_fn: Callable, probs_fn: Callable, metrics_fn: Callable, *,
        x_test: Sequence[Tensor] | None = None, y_test: Tensor | None = None,
        checkpoint_path: str | Path | None = None, resume: bool = False, fingerprint: dict | None = None,
        progress: Callable[[dict], None] | None = None) -> FitResult:
    """Train full-batch with validation selection; see the module docstring.

    Args:
        x_val, y_val: the validation part; both None for a fixed-length run without selection (the refit of
            the whole training set for an epoch count chosen before on validation): nothing is scored, early
            stopping is off and the model after the last epoch is returned.
        x_test, y_test: needed only with ``config.reference_protocol``; otherwise ignored (never scored).
        checkpoint_path: where to write checkpoints (None: none).
        resume: continue from ``checkpoint_path`` if it exists. Its ``fingerprint`` (any JSON-like dict, e.g.
            the resolved config) must equal the one given, so that a run is never resumed with other settings.
        progress: called after every epoch with ``{"epoch", "loss", ...}`` (plus validation scores on
            evaluation epochs).
    Returns:
        A :class:`FitResult`; ``model`` holds the selected (best-validation) weights on return.
    """
    _check_fit_args(config, x_val, y_val, x_test, y_test)
    no_val = x_val is None
    x_fit, x_val = list(x_fit), (None if no_val else list(x_val))
    if not no_val:
        _check_selection_keys(model, x_val, y_val, config, loss_fn, probs_fn, metrics_fn)
    loop = _Loop(model, config, (loss_fn, probs_fn, metrics_fn), (x_val, y_val), (x_test, y_test),
                 checkpoint_path, fingerprint)
    resumed_from = loop.restore() if resume else None
    state = loop.state
    model.train()
    t_start, c_start = time.perf_counter(), time.process_time()
    t_before, c_before = state["train_seconds"], state.get("cpu_seconds", 0.0)
    while not state["finished"] and state["epoch"] < config.epochs:
        epoch = state["epoch"] + 1
        row = loop.step(x_fit, y_fit, epoch)
        last = epoch == config.epochs
        if epoch % config.eval_every == 0 or last:
            if not no_val:
                row.update(loop.evaluation(epoch))
            state["history"].append(row)
            if (not no_val and config.patience is not None and epoch >= config.min_epochs
                    and epoch - state["last_improvement"] >= config.patience):
                state["stopped_early"] = True
                state["finished"] = True
        if last:
            state["finished"] = True
        state["train_seconds"] = t_before + time.perf_counter() - t_start
        state["cpu_seconds"] = c_before + time.process_time() - c_start
        if progress is not None:
            progress(row)
        if state["finished"] or epoch % config.checkpoint_every == 0:
            loop.save()
    return loop.result(x_val, y_val, y_fit, resumed_from)


def _check_fit_args(config: FullBatchConfig, x_val, y_val, x_test, y_test) -> None:
    if config.reference_protocol and (x_test is None or y_test is None):
        raise ValueError("reference_protocol needs x_test and y_test")
    if config.select != "ce" and not isinstance(config.select, str):
        raise ValueError(f"bad selection key {config.select!r}")
    if (x_val is None) != (y_val is None):
        raise ValueError("give both x_val and y_val, or neither")
    if x_val is None and config.reference_protocol:
        raise ValueError("reference_protocol needs a validation part")


class _Loop:
    """The state of one :func:`fit`: optimiser, schedule, guard, the trainer's bookkeeping and its checkpoint."""

    def __init__(self, model: nn.Module, config: FullBatchConfig, fns: tuple, val: tuple, test: tuple,
                 checkpoint_path, fingerprint: dict | None):
        self.model, self.config = model, config
        self.loss_fn, self.probs_fn, self.metrics_fn = fns
        (self.x_val, self.y_val), (self.x_test, self.y_test) = val, test
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = make_scheduler(self.optimizer, config)
        self.guard = None if config.guard is None else DivergenceGuard(
            model, GuardConfig(config.guard, config.guard_max_residual, config.guard_max_consecutive))
        self.state = {
            "epoch": 0, "best_epoch": 0, "best_score": None, "best_tie": None, "best_val": {}, "best_state": None,
            "last_improvement": 0, "history": [], "reference_best_test": None, "train_seconds": 0.0,
            "cpu_seconds": 0.0, "finished": False, "stopped_early": False,
        }
        self.ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
        self.fingerprint = fingerprint

    def restore(self) -> int | None:
        """Continue from the checkpoint if there is one; the epoch it was written at (None: none)."""
        ckpt = self.ckpt
        if ckpt is None or not ckpt.is_file():
            return None
        saved = load_checkpoint(ckpt)
        if self.fingerprint is not None and saved.get("fingerprint") != self.fingerprint:
            raise UserError(f"{ckpt} was written with other settings; remove it or drop --resume")
        require_entries(saved, ckpt, ["model", "optimizer", "scheduler", "rng", "trainer"])
        load_state_into(self.model, saved["model"], ckpt)
        load_state_into(self.optimizer, saved["optimizer"], ckpt, "optimizer")
        load_state_into(self.scheduler, saved["scheduler"], ckpt, "scheduler")
        set_rng_state(saved["rng"])
        self.state = saved["trainer"]
        if self.guard is not None and "guard" in self.state:
            self.guard.load_state_dict(self.state["guard"])
        log.info("resumed from %s at epoch %d", ckpt, int(self.state["epoch"]))
        return int(self.state["epoch"])

    def save(self) -> None:
        if self.ckpt is None:
            return
        save_checkpoint(self.ckpt, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": rng_state(), "trainer": self.state,
            "fingerprint": self.fingerprint,
        })

    def step(self, x_fit, y_fit, epoch: int) -> dict:
        """One full-batch training step (through the guard when there is one); its history row."""
        model, optimizer, config, state = self.model, self.optimizer, self.config, self.state
        if self.guard is None:
            optimizer.zero_grad(set_to_none=True)
            out = model(x_fit)
            loss, parts = self.loss_fn(out, y_fit)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {float(loss)} at epoch {epoch}")
            loss.backward()
            if config.clip_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
        else:  # the same step, skipped (or retried with a phantom gradient) when it diverged
            def closure():
                o = model(x_fit)
                total, p = self.loss_fn(o, y_fit)
                return total, (o, p)

            report = self.guard.step(closure, optimizer, clip_norm=config.clip_norm, where=f"epoch {epoch}")
            out, parts = report.output
            state["guard"] = self.guard.state_dict()
        self.scheduler.step()
        state["epoch"] = epoch
        row = {"epoch": epoch, **parts, "lr": optimizer.param_groups[0]["lr"]}
        if self.guard is not None and report.action != "step":
            row["guard"] = report.action
        info = getattr(out, "info", None)
        if info is not None and getattr(info, "forward", None) is not None:
            row["solver_steps"] = int(info.forward.nstep)
        return row

    def evaluation(self, epoch: int) -> dict:
        """Score the validation part, keep the best model so far; the history entries."""
        config, state, model = self.config, self.state, self.model
        val = evaluate(model, self.x_val, self.y_val, self.loss_fn, self.probs_fn, self.metrics_fn)
        row = {"epoch": epoch, **{f"val_{k}": v for k, v in val.items()}}
        if config.select not in val:
            raise ValueError(f"selection key {config.select!r} not among the validation scores {sorted(val)}")
        score = float(val[config.select])
        tie = float(val[config.tie_break]) if config.tie_break else None
        if math.isfinite(score) and _better(score, tie, state["best_score"], state["best_tie"], config.select,
                                            config.tie_break):
            state.update(best_score=score, best_tie=tie, best_epoch=epoch, best_val=val,
                         best_state=_clone_state(model), last_improvement=epoch)
        if config.reference_protocol:
            test, _ = _score(model, self.x_test, self.y_test, self.loss_fn, self.probs_fn, self.metrics_fn)
            row.update({f"reftest_{k}": v for k, v in test.items()})
            ref = state["reference_best_test"] or {}
            for k, v in test.items():  # metrics: higher is better
                if k not in ref or v > ref[k]:
                    ref[k] = v
                    ref[f"{k}_epoch"] = epoch
            state["reference_best_test"] = ref
        return row

    def result(self, x_val, y_val, y_fit, resumed_from: int | None) -> FitResult:
        """Load the selected weights into the model and describe the run."""
        model, state = self.model, self.state
        if state["best_state"] is None:  # no validation part, or every validation score was NaN
            state["best_state"] = _clone_state(model)
            state["best_epoch"] = state["epoch"]
        model.load_state_dict(state["best_state"])
        seconds = float(state["train_seconds"])
        last_loss = next((h["loss"] for h in reversed(state["history"]) if "loss" in h), None)
        probs_val = None
        if x_val is not None:
            saved_rng = rng_state()
            try:
                was_training = model.training
                model.eval()
                with torch.no_grad():
                    probs_val = self.probs_fn(model(x_val))
                model.train(was_training)
            finally:
                set_rng_state(saved_rng)
        return FitResult(
            best_epoch=int(state["best_epoch"]),
            best_score=float(state["best_score"]) if state["best_score"] is not None else math.nan,
            best_val=dict(state["best_val"]),
            epochs_run=int(state["epoch"]),
            stopped_early=bool(state["stopped_early"]),
            history=list(state["history"]),
            seconds=seconds,
            seconds_per_epoch=seconds / max(int(state["epoch"]), 1),
            cpu_seconds=float(state.get("cpu_seconds", 0.0)),
            best_state=copy.copy(state["best_state"]),
            reference_best_test=copy.deepcopy(state["reference_best_test"]),
            resumed_from=resumed_from,
            guard=self.guard.summary() if self.guard is not None else None,
            health=classifier_health(probs_val, y_val, y_fit, last_loss),
        )
