"""The trainer: full-batch or mini-batch training with validation selection, one checkpoint and one result.

API
===

Data
    Each split is a mapping ``name -> tensor`` (:mod:`deqfusion.training.data`). Training batches are the split
    sliced by a shuffled index (``batch_size`` samples) or, with ``batch_size=None``, the whole split in storage
    order (full batch: one optimiser step per epoch, nothing shuffled). With ``preload=True`` the splits are moved
    to the device once; otherwise each batch is moved when used.

``step_fn(model, batch, training) -> StepOutput``
    Runs the model on one batch and returns the loss to minimise (task loss plus any regulariser), the predictions
    and targets that the metric sees (only needed in evaluation), and optional ``logs`` (scalars, averaged over an
    epoch or a split, e.g. solver steps). The trainer puts the model in train/eval mode and disables gradients for
    evaluation.

``metric_fn(predictions, targets) -> dict[str, float]``
    Scores a whole split from the concatenated (CPU) predictions and targets. The trainer adds ``"loss"`` (the
    batch-weighted mean of ``step_fn``'s loss) and the means of the step's ``logs`` (the metrics win on a name
    clash).

:class:`~deqfusion.training.config.TrainConfig`
    Epochs, batch sizes, optimiser and schedule (:mod:`deqfusion.training.optim`), evaluation interval, selection
    score and direction, early stopping, checkpoint interval, divergence guard, device.

:class:`Trainer`
    ``Trainer(model, step_fn, metric_fn, config, checkpoint=None, fingerprint=None, groups=None)``, then
    ``result = trainer.fit(train, val=None, test=None, resume=False, reference=None, progress=None)``.
    ``groups`` replaces the configured parameter groups (e.g. groups without weight decay).

    ``val``: scored every ``eval_every`` epochs and after the last; the best score selects the model (kept in
    memory and in the checkpoint), ``patience`` stops early. Without ``val``, nothing is scored and the model after
    the last epoch is the result. ``test``: scored once, on the selected model. ``reference`` (with
    ``reference_protocol``): scored at every evaluation, its best metrics recorded, never used otherwise.
    ``progress(row)``: called after every epoch with that epoch's history row.

    On return the model holds the selected weights.

Checkpoint
    With ``checkpoint`` (a path), one file, written atomically every ``checkpoint_every`` epochs and at the end:
    ``format``, ``model``, ``optimizer``, ``scheduler``, ``shuffle`` (the shuffling generator), ``rng`` and
    ``rng_per_rank`` (every RNG state), ``state`` (epoch, selection state, history, timing), ``best``
    (``{"epoch", "model"}``: the selected weights so far), ``fingerprint``, ``done`` and ``result`` (the finished
    run's :class:`TrainResult` as a dict). ``resume=True`` continues from it exactly (a resumed run gives the numbers
    of an uninterrupted one); a finished one is not trained again (its result is returned and its selected weights
    loaded). Its ``fingerprint`` (any JSON-like value) must equal the trainer's. Checkpoints of another format
    (those of the earlier full-batch and mini-batch trainers) are refused with a :class:`CheckpointError`.

Result
    A :class:`TrainResult` (``to_dict()`` for JSON): the same names for full-batch and mini-batch runs. History rows
    hold ``epoch``, ``train_<name>`` (the epoch's loss and logs, means over the steps taken), ``lr`` (after the
    epoch), ``guard`` (an epoch's last guard action other than a plain step, if any), ``val_<name>`` (on evaluation
    epochs) and ``reftest_<name>`` (reference protocol); no timing, so that a run's history is the same on every
    machine (the result holds the seconds and throughput).

Divergence guard
    Every training step goes through a :class:`~deqfusion.training.guard.DivergenceGuard` (``guard`` in the config):
    a step whose loss, gradients or DEQ solves are non-finite is skipped or retried with a phantom gradient,
    counted and logged; skipped steps neither advance a per-step schedule nor enter the epoch's means. A mini-batch
    epoch whose steps were all skipped raises :class:`TrainingDiverged`; a full-batch epoch is one step, and a
    skipped one counts toward the guard's limit of skipped steps in a row. Without a guard, a non-finite training
    loss raises :class:`TrainingDiverged` before the optimiser steps.

Multi-process training
    Under ``torchrun`` (after :func:`deqfusion.training.distributed.setup_from_env`), ``batch_size`` is the global
    batch: each of the N processes takes ``batch_size / N`` samples of every batch, gradients are averaged by
    ``DistributedDataParallel``, evaluation is sharded and gathered; only rank 0 writes the checkpoint (which holds
    every rank's RNG state). Full-batch training runs in one process.

Library code: no printing (tqdm bars only with ``progress=True``), logging through :mod:`logging`.
"""

from __future__ import annotations

import logging
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..errors import UserError
from . import distributed as ddp
from .checkpoint import CheckpointError, load_checkpoint, load_state_into, require_entries, save_checkpoint
from .config import TrainConfig
from .data import Split, iterate_batches, split_size, to_device
from .guard import DivergenceGuard, GuardConfig, TrainingDiverged
from .optim import make_optimizer, make_scheduler, per_epoch
from .seed import rng_state, set_rng_state
from .selection import improves, selection_mode

log = logging.getLogger(__name__)

__all__ = ["StepOutput", "TrainResult", "Trainer", "TrainingDiverged", "CHECKPOINT_FORMAT", "score", "merge_scores"]

#: the ``format`` entry of the trainer's checkpoints; a checkpoint without it (or with another) is not resumed
CHECKPOINT_FORMAT = "deqfusion.trainer/1"


@dataclass
class StepOutput:
    """What ``step_fn`` returns for one batch (see the module docstring)."""

    loss: Tensor
    predictions: Tensor | None = None
    targets: Tensor | None = None
    logs: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns (``to_dict()``: the same as a JSON-friendly dict).

    Attributes:
        best_epoch: the selected epoch (the last one without validation).
        best_score: its selection score (None without validation).
        epochs_run, stopped_early, resumed_from: epochs trained; stopped by ``patience``; the epoch the run was
            resumed after (None: not resumed).
        selection: ``{"metric", "mode"}``.
        val: the validation scores of the selected epoch (empty without validation).
        test: the selected model's scores on the test split, scored once (None: no test split).
        reference_best_test: the reference protocol's best metric values over evaluations, and the epochs
            (``<name>_epoch``), or None.
        history: one row per evaluation epoch (see the module docstring).
        train_seconds, train_cpu_seconds, seconds_per_epoch: wall and CPU seconds of the training loop
            (evaluations included).
        train_samples_per_s, eval_samples_per_s: training samples per second of training steps, scored samples per
            second of evaluation.
        peak_memory_mb, memory_kind: ``"cuda_max_allocated"`` (peak tensor memory on the GPU during ``fit``) or
            ``"cpu_max_rss"`` (the process's peak resident memory).
        device, world_size, guard, config: where and how it ran; the guard's counts (None: no guard).
        health: filled by callers that judge the final model (:mod:`deqfusion.training.health`), else None.
    """

    best_epoch: int
    best_score: float | None
    epochs_run: int
    stopped_early: bool
    selection: dict
    val: dict
    test: dict | None
    reference_best_test: dict | None
    history: list[dict]
    train_seconds: float
    train_cpu_seconds: float
    seconds_per_epoch: float
    train_samples_per_s: float | None
    eval_samples_per_s: float | None
    peak_memory_mb: float
    memory_kind: str
    device: str
    world_size: int
    guard: dict | None
    config: dict
    resumed_from: int | None = None
    health: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _plain(v):
    return float(v.detach()) if isinstance(v, Tensor) else v


class _Means:
    """Batch-size-weighted means of scalars (summed over processes); a single batch's values as they are."""

    def __init__(self, device: torch.device):
        self.device, self.sums, self.first, self.batches, self.n = device, {}, {}, 0, 0

    def add(self, values: dict, n: int) -> None:
        self.batches += 1
        self.n += n
        if self.batches == 1:
            self.first = {k: _plain(v) for k, v in values.items()}
        for k, v in values.items():
            v = v.detach().double() if isinstance(v, Tensor) else torch.tensor(float(v), dtype=torch.double)
            self.sums[k] = self.sums.get(k, 0) + v.to(self.device) * n

    def result(self, world_size: int) -> tuple[dict, float]:
        """``(means, samples)`` over every process."""
        if world_size == 1 and self.batches == 1:
            return dict(self.first), self.n
        keys, n, sums = list(self.sums), self.n, self.sums
        if world_size > 1:
            packed = ddp.all_reduce_sum(torch.stack(
                [torch.tensor(float(n), dtype=torch.double, device=self.device)] + [sums[k] for k in keys]))
            n, sums = float(packed[0]), dict(zip(keys, packed[1:]))
        return ({k: float(sums[k]) / n for k in keys} if n else {}), n


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(samples: float, seconds: float) -> float | None:
    return samples / seconds if seconds > 0 else None


def _clone_state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _fresh_state() -> dict:
    return {"epoch": 0, "best_epoch": 0, "best_score": None, "best_tie": None, "best_val": {},
            "last_improvement": 0, "history": [], "reference_best_test": None, "train_seconds": 0.0,
            "cpu_seconds": 0.0, "step_seconds": 0.0, "train_samples": 0, "eval_seconds": 0.0, "eval_samples": 0,
            "finished": False, "stopped_early": False}


def merge_scores(means: dict, metrics: dict) -> dict:
    """One split's scores: ``"loss"``, then the metrics, then the means of the step's logs (sorted by name) that
    the metrics do not name."""
    means = dict(means)
    out = {"loss": means.pop("loss")}
    out.update(metrics)
    for k in sorted(means):
        out.setdefault(k, means[k])
    return out


@torch.no_grad()
def score(model: nn.Module, split: Split, step_fn: Callable, metric_fn: Callable | None, batch_size: int | None,
          device: torch.device, desc: str = "eval", progress: bool = False) -> tuple[dict, dict, float]:
    """``(loss and log means, metrics, seconds)`` of ``model`` on ``split`` in eval mode (its mode restored), in
    batches of ``batch_size`` (None: one batch); under ``torchrun`` each process scores a contiguous share and the
    predictions are gathered, so the metrics are those of the whole split."""
    world, rank = ddp.world_size(), ddp.rank()
    n = split_size(split, desc)
    was_training = model.training
    model.eval()
    means, preds, targets = _Means(device), [], []
    bsz = batch_size or n
    share = torch.tensor_split(torch.arange(n), world)[rank] if world > 1 else None
    n_mine = n if share is None else share.numel()
    batches = iterate_batches(split, bsz, share) if n_mine else iter(())
    _sync(device)
    t0 = time.perf_counter()
    try:
        for batch in tqdm(batches, desc=desc, total=math.ceil(n_mine / bsz), leave=False,
                          disable=not progress or rank != 0, file=sys.stderr):
            batch = to_device(batch, device)
            out = step_fn(model, batch, False)
            means.add({"loss": out.loss, **out.logs}, split_size(batch))
            if metric_fn is not None:
                preds.append(out.predictions.detach().float())
                targets.append(out.targets.detach())
    finally:
        model.train(was_training)
    _sync(device)
    seconds = time.perf_counter() - t0
    values, _ = means.result(world)
    metrics = {}
    if metric_fn is not None:
        p, t = torch.cat(preds), torch.cat(targets)
        if world > 1:
            p, t = ddp.gather_rows(p), ddp.gather_rows(t)
        metrics = dict(metric_fn(p.cpu(), t.cpu()))
    return values, metrics, seconds


class Trainer:
    """See the module docstring for the API."""

    def __init__(self, model: nn.Module, step_fn: Callable[[nn.Module, dict, bool], StepOutput],
                 metric_fn: Callable[[Tensor, Tensor], dict] | None, config: TrainConfig,
                 checkpoint: str | Path | None = None, fingerprint=None, groups: list[dict] | None = None):
        self.config = config
        self.device = torch.device(config.device)
        self.model = model.to(self.device)
        self.step_fn, self.metric_fn = step_fn, metric_fn
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.fingerprint = fingerprint
        self.optimizer = make_optimizer(model, config, groups)
        self.guard = None if config.guard is None else DivergenceGuard(
            model, GuardConfig(config.guard, config.guard_max_residual, config.guard_max_consecutive))
        self.mode = selection_mode(config.select, config.select_mode)
        self.world_size, self.rank = ddp.world_size(), ddp.rank()
        self.train_model = model
        self._state, self._best, self._resumed_from = _fresh_state(), None, None
        if self.world_size > 1:
            if config.batch_size is None:
                raise ValueError("full-batch training (batch_size None) runs in one process")
            ddp.check_global_batch(config.batch_size, self.world_size)
            from torch.nn.parallel import DistributedDataParallel

            self.train_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=config.ddp_find_unused_parameters,
            )

    # ----------------------------------------------------------------------------------------- evaluation
    def evaluate(self, split: Split, desc: str = "eval") -> tuple[dict, float]:
        """The current model's scores on ``split`` (``"loss"``, the metrics, the logs' means) and the seconds."""
        means, metrics, seconds = self._score(split, desc)
        return merge_scores(means, metrics), seconds

    def _score(self, split: Split, desc: str) -> tuple[dict, dict, float]:
        cfg = self.config
        return score(self.model, split, self.step_fn, self.metric_fn, cfg.eval_batch_size or cfg.batch_size,
                     self.device, desc, cfg.progress)

    def _check_selection_keys(self, val: Split) -> None:
        """Before any training: score the untrained model once (RNG states restored afterwards, so the run is the
        one it would have been) and refuse a selection or tie-break score that is not among the scores."""
        cfg = self.config
        if {cfg.select, cfg.tie_break} <= {"loss", None}:
            return
        saved = rng_state()
        try:
            names, _ = self.evaluate(val, desc=f"{cfg.desc} valid")
        finally:
            set_rng_state(saved)
        for what, key in (("selection", cfg.select), ("tie-break", cfg.tie_break)):
            if key is not None and key not in names:
                scores = sorted(k for k in names if not k.startswith("solver_"))
                raise UserError(f"{what} score {key!r} is not among the validation scores of this model and data; "
                                f"choose one of {', '.join(scores)}")

    # ------------------------------------------------------------------------------------------- training
    def _steps_per_epoch(self, n_train: int) -> int:
        bs = self.config.batch_size
        if bs is None:
            return 1
        return n_train // bs if self.config.drop_last and n_train >= bs else math.ceil(n_train / bs)

    def _train_batches(self, train: Split, gen: torch.Generator):
        """``(batches, count)`` of one epoch: the whole split, or shuffled batches of this process's share."""
        cfg = self.config
        if cfg.batch_size is None:
            return iterate_batches(train, split_size(train)), 1
        order = torch.randperm(split_size(train), generator=gen)
        bsz = cfg.batch_size // self.world_size  # per-process share of the global batch
        order = ddp.shard_order(order) if self.world_size > 1 else order
        n = order.numel()
        count = n // bsz if cfg.drop_last and n >= bsz else math.ceil(n / bsz)
        return iterate_batches(train, bsz, order, cfg.drop_last), count

    def _step(self, batch: dict, where: str) -> tuple[StepOutput, bool, str]:
        """One optimiser step on ``batch`` (through the guard when there is one): output, stepped, action."""
        cfg = self.config
        if self.guard is None:
            out = self.step_fn(self.train_model, batch, True)
            if not bool(torch.isfinite(out.loss.detach())):
                raise TrainingDiverged(f"{cfg.desc}: the training loss became {float(out.loss.detach())} in {where}")
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if cfg.clip_norm is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
            self.optimizer.step()
            return out, True, "step"

        def closure():
            o = self.step_fn(self.train_model, batch, True)
            return o.loss, o

        report = self.guard.step(closure, self.optimizer, clip_norm=cfg.clip_norm, where=where)
        return report.output, report.stepped, report.action

    def _train_epoch(self, train: Split, epoch: int, scheduler, gen: torch.Generator) -> dict:
        """One epoch of optimiser steps; the start of its history row."""
        cfg = self.config
        self.model.train()
        batches, count = self._train_batches(train, gen)
        bar = tqdm(batches, total=count, desc=f"{cfg.desc} epoch {epoch}", leave=False,
                   disable=not cfg.progress or self.rank != 0, file=sys.stderr)
        means, action = _Means(self.device), None
        _sync(self.device)
        t0 = time.perf_counter()
        for i, batch in enumerate(bar):
            batch = to_device(batch, self.device)
            out, stepped, act = self._step(batch, f"epoch {epoch}" if count == 1 else f"epoch {epoch} batch {i + 1}")
            action = act if act != "step" else action
            if not stepped:
                continue
            if not per_epoch(cfg):
                scheduler.step()
            means.add({"loss": out.loss, **out.logs}, split_size(batch))
            if cfg.progress and i % 10 == 0:
                bar.set_postfix(loss=f"{float(out.loss.detach()):.4f}")
        _sync(self.device)
        seconds = time.perf_counter() - t0
        if per_epoch(cfg):
            scheduler.step()
        logs, seen = means.result(self.world_size)
        if not seen and cfg.batch_size is not None:
            events = {k: v for k, v in (self.guard.summary()["events"] if self.guard else {}).items() if v}
            raise TrainingDiverged(f"{cfg.desc}: every step of epoch {epoch} was skipped by the divergence guard "
                                   f"(events so far: {events or 'none'})")
        self._state["step_seconds"] += seconds
        self._state["train_samples"] += (self._steps_per_epoch(split_size(train)) * cfg.batch_size
                                         if cfg.drop_last and cfg.batch_size else split_size(train))
        row = {"epoch": epoch, **{f"train_{k}": v for k, v in logs.items()}, "lr": self.optimizer.param_groups[0]["lr"]}
        if action is not None:
            row["guard"] = action
        return row

    # ---------------------------------------------------------------------------------- evaluation epochs
    def _evaluation(self, epoch: int, val: Split, reference: Split | None) -> dict:
        """Score the validation split, keep the best model so far; the history entries."""
        cfg, state = self.config, self._state
        scores, seconds = self.evaluate(val, desc=f"{cfg.desc} valid")
        state["eval_seconds"] += seconds
        state["eval_samples"] += split_size(val)
        row = {f"val_{k}": v for k, v in scores.items()}
        if cfg.select not in scores:
            raise ValueError(f"selection score {cfg.select!r} is not among the validation scores {sorted(scores)}")
        score = float(scores[cfg.select])
        tie = float(scores[cfg.tie_break]) if cfg.tie_break else None
        if improves(score, tie, state["best_score"], state["best_tie"], self.mode, cfg.tie_break, cfg.min_delta):
            state.update(best_score=score, best_tie=tie, best_epoch=epoch, best_val=scores, last_improvement=epoch)
            self._best = _clone_state(self.model)
        if reference is not None:
            _, metrics, _ = self._score(reference, f"{cfg.desc} reference")
            row.update({f"reftest_{k}": v for k, v in metrics.items()})
            best = state["reference_best_test"] or {}
            for k, v in metrics.items():  # metrics: higher is better
                if k not in best or v > best[k]:
                    best[k] = v
                    best[f"{k}_epoch"] = epoch
            state["reference_best_test"] = best
        return row

    def _should_stop(self, epoch: int) -> bool:
        cfg = self.config
        return (cfg.patience is not None and epoch >= cfg.min_epochs
                and epoch - self._state["last_improvement"] >= cfg.patience)

    # ---------------------------------------------------------------------------------------------- fit
    def fit(self, train: Split, val: Split | None = None, test: Split | None = None, *, resume: bool = False,
            reference: Split | None = None, progress: Callable[[dict], None] | None = None) -> TrainResult:
        """Train, select on ``val``, score ``test`` once; see the module docstring."""
        cfg = self.config
        if cfg.reference_protocol and (reference is None or val is None):
            raise ValueError("reference_protocol needs a reference (test) split and a validation split")
        splits = {"train": train, "val": val, "test": test, "reference": reference if cfg.reference_protocol else None}
        for name, split in splits.items():
            if split is not None:
                split_size(split, name)
                if cfg.preload:
                    splits[name] = to_device(split, self.device)
        train, val, test, reference = splits.values()
        scheduler = make_scheduler(self.optimizer, cfg, self._steps_per_epoch(split_size(train)))
        gen = torch.Generator().manual_seed(cfg.shuffle_seed)
        self._state, self._best, self._resumed_from = _fresh_state(), None, None
        if resume and self.checkpoint is not None and self.checkpoint.is_file():
            finished = self._restore(scheduler, gen)
            if finished is not None:
                return finished
        if val is not None:
            self._check_selection_keys(val)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._loop(train, val, reference, scheduler, gen, progress)
        return self._finish(val, test, scheduler, gen)

    def _loop(self, train, val, reference, scheduler, gen, progress) -> None:
        cfg, state = self.config, self._state
        t_start, c_start = time.perf_counter(), time.process_time()
        t_before, c_before = state["train_seconds"], state["cpu_seconds"]
        epochs = tqdm(range(state["epoch"] + 1, cfg.epochs + 1), desc=cfg.desc, initial=state["epoch"],
                      total=cfg.epochs, disable=not cfg.progress or self.rank != 0, file=sys.stderr)
        for epoch in epochs:
            if state["finished"]:
                break
            row = self._train_epoch(train, epoch, scheduler, gen)
            state["epoch"] = epoch
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                if val is not None:
                    row.update(self._evaluation(epoch, val, reference))
                state["history"].append(row)
                if val is not None and self._should_stop(epoch):
                    state["stopped_early"] = state["finished"] = True
                    log.info("%s: no improvement of %s for %d epochs; stopped after epoch %d", cfg.desc,
                             cfg.select, cfg.patience, epoch)
            state["finished"] = state["finished"] or epoch == cfg.epochs
            state["train_seconds"] = t_before + time.perf_counter() - t_start
            state["cpu_seconds"] = c_before + time.process_time() - c_start
            if self.guard is not None:
                state["guard"] = self.guard.state_dict()
            if progress is not None:
                progress(row)
            epochs.set_postfix({"loss": f"{row.get('train_loss', math.nan):.4f}", "best": state["best_epoch"]})
            if not state["finished"] and epoch % cfg.checkpoint_every == 0:
                self._save(scheduler, gen, done=False)

    def _finish(self, val, test, scheduler, gen) -> TrainResult:
        """Load the selected weights, score the test split once, write the finished checkpoint; the result."""
        cfg, state = self.config, self._state
        if val is None:
            self._best = _clone_state(self.model)
            state["best_epoch"] = state["epoch"]
        elif state["best_score"] is None:
            raise TrainingDiverged(f"{cfg.desc}: the selection score {cfg.select!r} was never finite")
        else:
            self.model.load_state_dict(self._best)
        test_scores = None
        if test is not None:
            test_scores, seconds = self.evaluate(test, desc=f"{cfg.desc} test")
            state["eval_seconds"] += seconds
            state["eval_samples"] += split_size(test)
        result = self._result(test_scores)
        self._save(scheduler, gen, done=True, result=result)
        return result

    def _result(self, test: dict | None) -> TrainResult:
        cfg, state = self.config, self._state
        if self.device.type == "cuda":
            peak, kind = torch.cuda.max_memory_allocated(self.device) / 2**20, "cuda_max_allocated"
        else:
            peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_max_rss"
        seconds, epochs = float(state["train_seconds"]), int(state["epoch"])
        ref = state["reference_best_test"]
        return TrainResult(
            best_epoch=int(state["best_epoch"]), best_score=state["best_score"], epochs_run=epochs,
            stopped_early=bool(state["stopped_early"]), selection={"metric": cfg.select, "mode": self.mode},
            val=dict(state["best_val"]), test=test, reference_best_test=dict(ref) if ref is not None else None,
            history=list(state["history"]), train_seconds=seconds, train_cpu_seconds=float(state["cpu_seconds"]),
            seconds_per_epoch=seconds / max(epochs, 1),
            train_samples_per_s=_rate(state["train_samples"], state["step_seconds"]),
            eval_samples_per_s=_rate(state["eval_samples"], state["eval_seconds"]), peak_memory_mb=peak,
            memory_kind=kind, device=str(self.device), world_size=self.world_size,
            guard=self.guard.summary() if self.guard is not None else None, config=asdict(cfg),
            resumed_from=self._resumed_from,
        )

    # ----------------------------------------------------------------------------------------- checkpoint
    def _save(self, scheduler, gen: torch.Generator, done: bool, result: TrainResult | None = None) -> None:
        if self.checkpoint is None:
            return
        per_rank = ddp.all_gather_objects(rng_state())  # collective: every process calls this
        if self.rank != 0:
            return
        best = None if self._best is None else {"epoch": self._state["best_epoch"], "model": self._best}
        save_checkpoint(self.checkpoint, {
            "format": CHECKPOINT_FORMAT, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "shuffle": gen.get_state(), "rng": rng_state(),
            "rng_per_rank": per_rank, "state": self._state, "best": best, "fingerprint": self.fingerprint,
            "done": done, "result": result.to_dict() if result is not None else None,
        })

    def _restore(self, scheduler, gen: torch.Generator) -> TrainResult | None:
        """Continue from the checkpoint: None, or the stored result of a finished run (its weights loaded)."""
        path = self.checkpoint
        saved = load_checkpoint(path, map_location=self.device)
        if saved.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} is not a checkpoint of this trainer's format {CHECKPOINT_FORMAT!r} (it was "
                                  "written by an earlier version); it cannot be resumed: remove it or use another "
                                  "output folder")
        if self.fingerprint is not None and saved.get("fingerprint") != self.fingerprint:
            raise UserError(f"{path} was written by a run with other settings; start a new output folder or rerun "
                            "with the original settings")
        require_entries(saved, path, ["model", "optimizer", "scheduler", "shuffle", "rng", "state", "best", "done"])
        per_rank = saved.get("rng_per_rank") or [saved["rng"]]
        if len(per_rank) != self.world_size:
            log.warning("%s: checkpoint written by %d process(es), resuming with %d: random streams differ "
                        "from an uninterrupted run", self.config.desc, len(per_rank), self.world_size)
        set_rng_state(per_rank[self.rank] if self.rank < len(per_rank) else saved["rng"])
        self._best = saved["best"]["model"] if saved["best"] is not None else None
        self._resumed_from = int(saved["state"]["epoch"])
        load_state_into(self.model, saved["model"], path)
        load_state_into(self.optimizer, saved["optimizer"], path, "optimizer")
        load_state_into(scheduler, saved["scheduler"], path, "scheduler")
        if saved["done"]:
            log.info("%s: finished run found in %s, not training again", self.config.desc, path)
            require_entries(saved, path, ["result"])
            load_state_into(self.model, self._best, path, "selected model")
            return TrainResult(**dict(saved["result"], resumed_from=self._resumed_from))
        gen.set_state(saved["shuffle"])
        self._state = saved["state"]
        if self.guard is not None and "guard" in self._state:
            self.guard.load_state_dict(self._state["guard"])
        log.info("%s: resuming after epoch %d", self.config.desc, self._state["epoch"])
        return None
