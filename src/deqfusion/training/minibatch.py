"""A task-agnostic mini-batch trainer: AdamW with per-submodule learning rates, early stopping on a
validation metric, one test evaluation of the selected model, atomic checkpoints with exact resume, throughput
and memory.

API
===

Data
    Each split is a mapping ``name -> tensor`` whose tensors share their first (sample) dimension, e.g.
    ``{"text": (n, 300), "image": (n, 4096), "labels": (n, 23)}``. Batches are the same mapping sliced by
    a shuffled index (training) or in order (evaluation). With ``preload=True`` the splits are moved to the
    device once; otherwise each batch is moved when used.

``step_fn(model, batch, training) -> StepOutput``
    Runs the model on one batch and returns the loss to minimise (task loss plus any regulariser, e.g.
    ``bce + lambda_jac * info.jac_loss``), the predictions and targets that the metric sees, and optional
    ``logs`` (scalars averaged over the epoch, e.g. the Jacobian loss or solver steps). The trainer puts the
    model in train/eval mode and disables gradients for evaluation.

``metric_fn(predictions, targets) -> dict[str, float]``
    Scores a whole split from the concatenated (CPU) predictions and targets. The trainer adds ``"loss"``
    (the mean of ``step_fn``'s loss), so ``select_metric="loss", select_mode="min"`` needs no metric of its
    own, and the means of the step's ``logs`` over the split (e.g. ``solver_steps``).

:class:`TrainerConfig`
    Epochs, batch sizes, AdamW learning rate and weight decay, ``group_lrs`` (submodule name prefix ->
    learning rate, e.g. ``{"fusion": 1e-4}``), selection metric and mode, ``patience`` (epochs without
    improvement of more than ``min_delta`` before stopping; None: never), gradient clipping, learning-rate
    schedule (``"constant"``, ``"warmup_constant"``, ``"warmup_linear"``, warm-up over ``warmup_fraction``),
    shuffling seed, device, progress bars.

:class:`MinibatchTrainer`
    ``MinibatchTrainer(model, step_fn, metric_fn, config, out_dir=None, fingerprint=None,
    checkpoint_name="last.pt")``, then ``result = trainer.fit(train, valid, test=None, resume=False)``. With
    ``out_dir`` it writes ``checkpoint_name`` (everything needed to resume exactly: model, optimizer, scheduler,
    RNG states, shuffling generator, history, early-stopping state) after every epoch and ``best.pt`` (the
    selected model) whenever the selection metric improves, both atomically. ``resume=True`` continues from the
    checkpoint; a finished run returns its stored result. ``fingerprint`` (any JSON-like value, e.g. the resolved
    config) is stored and must match on resume.

Result (a JSON-friendly dict)
    ``best_epoch``, ``epochs_run``, ``stopped_early``, ``valid`` (metrics of the selected epoch), ``test``
    (metrics of the selected model on the test split, evaluated once, or None), ``history`` (one dict per
    epoch: train loss and logs, validation metrics, seconds, samples/s), ``train_samples_per_s`` (training
    samples over training time, evaluation excluded), ``eval_samples_per_s``, ``train_time_s``,
    ``peak_memory_mb`` and ``memory_kind`` (``"cuda_max_allocated"``: peak tensor memory on the GPU during
    ``fit``; ``"cpu_max_rss"``: the process's peak resident memory, which is never reset).

Divergence guard
    Every training step goes through a :class:`~deqfusion.training.guard.DivergenceGuard` (``guard`` in the
    config: ``"skip"`` by default, ``"phantom"``, ``"raise"`` or None for none): a step whose loss, gradients or
    DEQ solves are non-finite (or whose solver residual exceeds ``guard_max_residual``) is skipped or retried with
    a phantom gradient, counted (``result["guard"]``) and logged; the optimiser never steps on NaN.

Multi-process training
    Under ``torchrun`` (after :func:`deqfusion.training.distributed.setup_from_env`), ``batch_size`` is the
    *global* batch: each of the N processes takes ``batch_size / N`` samples of every batch (the shuffled order
    sharded as :class:`~torch.utils.data.DistributedSampler` does), gradients are averaged by
    :class:`~torch.nn.parallel.DistributedDataParallel`, evaluation is sharded and its predictions gathered, so
    metrics are those of the whole split; only rank 0 writes checkpoints (which hold every rank's RNG state).

Library code: no printing (tqdm bars only with ``progress=True``), logging through :mod:`logging`.
"""

from __future__ import annotations

import copy
import logging
import math
import resource
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..errors import UserError
from . import distributed as ddp
from .checkpoint import load_checkpoint, load_state_into, require_entries, save_checkpoint
from .guard import DivergenceGuard, GuardConfig, TrainingDiverged
from .seed import rng_state, set_rng_state

log = logging.getLogger(__name__)

__all__ = ["StepOutput", "TrainerConfig", "MinibatchTrainer", "TrainingDiverged", "param_groups",
           "iterate_batches", "split_size"]

Split = Mapping[str, Tensor]


@dataclass
class StepOutput:
    """What ``step_fn`` returns for one batch (see the module docstring)."""

    loss: Tensor
    predictions: Tensor
    targets: Tensor
    logs: dict = field(default_factory=dict)


@dataclass
class TrainerConfig:
    max_epochs: int = 100
    batch_size: int = 256
    eval_batch_size: int | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-2
    group_lrs: dict = field(default_factory=dict)
    betas: tuple = (0.9, 0.999)
    select_metric: str = "loss"
    select_mode: str = "min"
    patience: int | None = None
    min_delta: float = 0.0
    grad_clip: float | None = None
    schedule: str = "constant"
    warmup_fraction: float = 0.0
    seed: int = 0
    drop_last: bool = False
    device: str = "cpu"
    preload: bool = True
    progress: bool = False
    desc: str = "train"
    guard: str | None = "skip"
    guard_max_residual: float | None = None
    guard_max_consecutive: int = 25
    ddp_find_unused_parameters: bool = False

    def __post_init__(self):
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.batch_size < 1 or (self.eval_batch_size is not None and self.eval_batch_size < 1):
            raise ValueError("batch sizes must be >= 1")
        if self.select_mode not in ("min", "max"):
            raise ValueError(f"select_mode must be 'min' or 'max', got {self.select_mode!r}")
        if self.schedule not in ("constant", "warmup_constant", "warmup_linear"):
            raise ValueError(f"unknown schedule {self.schedule!r}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must lie in [0, 1), got {self.warmup_fraction}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        if self.guard is not None:
            GuardConfig(self.guard, self.guard_max_residual, self.guard_max_consecutive)  # checks the values


def split_size(split: Split, name: str = "split") -> int:
    """Number of samples in a split; raises ``ValueError`` if its tensors disagree or it is empty."""
    if not isinstance(split, Mapping) or not split:
        raise ValueError(f"{name} must be a non-empty mapping of tensors")
    sizes = {k: int(v.shape[0]) for k, v in split.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"{name}: tensors have different numbers of samples: {sizes}")
    n = next(iter(sizes.values()))
    if n == 0:
        raise ValueError(f"{name} holds no samples")
    return n


def iterate_batches(split: Split, batch_size: int, order: Tensor | None = None, drop_last: bool = False):
    """Yield batches (dicts) of ``split`` in ``order`` (an index tensor, possibly a subset) or in storage order."""
    n = split_size(split) if order is None else order.numel()
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for lo in range(0, stop, batch_size):
        if order is None:
            yield {k: v[lo : lo + batch_size] for k, v in split.items()}
        else:
            idx = order[lo : lo + batch_size]
            yield {k: v[idx.to(v.device)] for k, v in split.items()}


def param_groups(model: nn.Module, lr: float, weight_decay: float,
                 group_lrs: Mapping[str, float] | None = None) -> list[dict]:
    """AdamW parameter groups: parameters under each submodule prefix in ``group_lrs`` get that learning rate.

    A prefix matches a parameter named ``prefix`` or ``prefix.<anything>``; the first matching prefix wins.
    Raises ``ValueError`` for a prefix that matches no trainable parameter.
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


def _schedule_fn(kind: str, warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if kind != "constant" and step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "warmup_linear":
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
        return 1.0

    return f


def _to_device(split: Split, device) -> dict:
    return {k: v.to(device) for k, v in split.items()}


def _scalar(v) -> Tensor:
    return torch.tensor(float(v), dtype=torch.double)


def _rate(samples: float, seconds: float) -> float | None:
    return samples / seconds if seconds > 0 else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class MinibatchTrainer:
    """See the module docstring for the API."""

    def __init__(self, model: nn.Module, step_fn: Callable[[nn.Module, dict, bool], StepOutput],
                 metric_fn: Callable[[Tensor, Tensor], dict] | None, config: TrainerConfig,
                 out_dir: str | Path | None = None, fingerprint=None, checkpoint_name: str = "last.pt"):
        self.config = config
        self.device = torch.device(config.device)
        self.model = model.to(self.device)
        self.step_fn = step_fn
        self.metric_fn = metric_fn
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.fingerprint = fingerprint
        self.checkpoint_name = checkpoint_name
        self.optimizer = torch.optim.AdamW(
            param_groups(model, config.lr, config.weight_decay, config.group_lrs), lr=config.lr,
            betas=tuple(config.betas), weight_decay=config.weight_decay,
        )
        self.guard = None if config.guard is None else DivergenceGuard(
            model, GuardConfig(config.guard, config.guard_max_residual, config.guard_max_consecutive))
        self.world_size, self.rank = ddp.world_size(), ddp.rank()
        self.train_model = model
        if self.world_size > 1:
            ddp.check_global_batch(config.batch_size, self.world_size)
            from torch.nn.parallel import DistributedDataParallel

            self.train_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=config.ddp_find_unused_parameters,
            )

    # ----------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, split: Split, desc: str = "eval") -> tuple[dict, float]:
        """Metrics of the current model on ``split`` (plus ``"loss"``) and the evaluation seconds."""
        cfg = self.config
        n = split_size(split, desc)
        self.model.eval()
        preds, targets, log_sums = [], [], {}
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        _sync(self.device)
        t0 = time.perf_counter()
        bsz = cfg.eval_batch_size or cfg.batch_size
        # with several processes each scores a contiguous share, gathered below in sample order
        share = torch.tensor_split(torch.arange(n), self.world_size)[self.rank] if self.world_size > 1 else None
        n_mine = n if share is None else share.numel()
        batches = iterate_batches(split, bsz, share) if n_mine else iter(())
        for batch in tqdm(batches, desc=desc, total=math.ceil(n_mine / bsz), leave=False,
                          disable=not cfg.progress or self.rank != 0, file=sys.stderr):
            batch = _to_device(batch, self.device)
            out = self.step_fn(self.model, batch, False)
            bs = out.predictions.shape[0]
            loss_sum += out.loss.detach().double() * bs
            for k, v in out.logs.items():
                v = v.detach().double() if isinstance(v, Tensor) else _scalar(v)
                log_sums[k] = log_sums.get(k, 0) + v.to(self.device) * bs
            preds.append(out.predictions.detach().float())
            targets.append(out.targets.detach())
        _sync(self.device)
        seconds = time.perf_counter() - t0
        keys = sorted(log_sums)
        if self.world_size > 1:
            loss_sum = ddp.all_reduce_sum(loss_sum)
            if keys:
                log_sums = dict(zip(keys, ddp.all_reduce_sum(torch.stack([log_sums[k] for k in keys]))))
            preds = [ddp.gather_rows(torch.cat(preds))]
            targets = [ddp.gather_rows(torch.cat(targets))]
        metrics = {"loss": float(loss_sum) / n}
        if self.metric_fn is not None:
            metrics.update(self.metric_fn(torch.cat(preds).cpu(), torch.cat(targets).cpu()))
        for k in keys:  # the step's logs (e.g. solver steps), averaged over the split
            metrics.setdefault(k, float(log_sums[k]) / n)
        return metrics, seconds

    # ------------------------------------------------------------------------------------------- training
    def _train_epoch(self, train: Split, order: Tensor, epoch: int, scheduler) -> tuple[dict, float]:
        cfg = self.config
        self.model.train()
        sums: dict[str, Tensor] = {}
        seen = 0
        bsz = cfg.batch_size // self.world_size  # per-process share of the global batch
        order = ddp.shard_order(order) if self.world_size > 1 else order
        n = order.numel()
        n_batches = n // bsz if cfg.drop_last and n >= bsz else math.ceil(n / bsz)
        bar = tqdm(iterate_batches(train, bsz, order, cfg.drop_last), total=n_batches,
                   desc=f"{cfg.desc} epoch {epoch}", leave=False, disable=not cfg.progress or self.rank != 0,
                   file=sys.stderr)
        _sync(self.device)
        t0 = time.perf_counter()
        for i, batch in enumerate(bar):
            batch = _to_device(batch, self.device)
            if self.guard is None:
                out = self.step_fn(self.train_model, batch, True)
                self.optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                stepped = True
            else:
                def closure(batch=batch):
                    o = self.step_fn(self.train_model, batch, True)
                    return o.loss, o

                report = self.guard.step(closure, self.optimizer, clip_norm=cfg.grad_clip,
                                         where=f"epoch {epoch} batch {i + 1}")
                out, stepped = report.output, report.stepped
            if not stepped:  # a skipped step neither advances the schedule nor enters the epoch's averages
                continue
            scheduler.step()
            bs = out.predictions.shape[0]
            seen += bs
            for k, v in {"loss": out.loss, **out.logs}.items():
                v = v.detach().double() if isinstance(v, Tensor) else _scalar(v)
                sums[k] = sums.get(k, 0) + v.to(self.device) * bs
            if cfg.progress and i % 10 == 0:
                bar.set_postfix(loss=f"{float(out.loss.detach()):.4f}")
        _sync(self.device)
        seconds = time.perf_counter() - t0
        if self.world_size > 1:
            keys = sorted(sums)
            packed = ddp.all_reduce_sum(torch.stack([torch.as_tensor(float(seen), dtype=torch.double,
                                                                     device=self.device)]
                                                    + [sums[k] for k in keys]))
            seen, sums = float(packed[0]), dict(zip(keys, packed[1:]))
        if not seen:
            events = {k: v for k, v in (self.guard.summary()["events"] if self.guard else {}).items() if v}
            raise TrainingDiverged(f"{cfg.desc}: every step of epoch {epoch} was skipped by the divergence guard "
                                   f"(events so far: {events or 'none'})")
        logs = {f"train_{k}": float(v) / seen for k, v in sums.items()}
        if not math.isfinite(logs["train_loss"]):
            raise TrainingDiverged(
                f"{cfg.desc}: the training loss became {logs['train_loss']} in epoch {epoch}"
            )
        logs["train_samples_per_s"] = seen / seconds if seconds > 0 else float("inf")
        logs["train_seconds"] = seconds
        return logs, seconds

    def _improved(self, value: float, best: float | None) -> bool:
        if best is None:
            return math.isfinite(value)
        if self.config.select_mode == "max":
            return value > best + self.config.min_delta
        return value < best - self.config.min_delta

    def fit(self, train: Split, valid: Split, test: Split | None = None, resume: bool = False) -> dict:
        cfg = self.config
        n_train = split_size(train, "train")
        split_size(valid, "valid")
        if test is not None:
            split_size(test, "test")
        if cfg.preload:
            train = _to_device(train, self.device)
            valid = _to_device(valid, self.device)
            test = _to_device(test, self.device) if test is not None else None
        steps_per_epoch = (n_train // cfg.batch_size if cfg.drop_last and n_train >= cfg.batch_size
                           else math.ceil(n_train / cfg.batch_size))
        total = steps_per_epoch * cfg.max_epochs
        warmup = max(1, int(round(cfg.warmup_fraction * total))) if cfg.schedule != "constant" else 0
        scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                      _schedule_fn(cfg.schedule, warmup, total))
        gen = torch.Generator().manual_seed(cfg.seed)

        state = {"epoch": 0, "best_value": None, "best_epoch": 0, "bad_epochs": 0, "history": [],
                 "train_time_s": 0.0, "train_samples": 0, "eval_time_s": 0.0, "eval_samples": 0}
        self._best_in_memory = None
        last_path = self.out_dir / self.checkpoint_name if self.out_dir is not None else None
        if resume and last_path is not None and last_path.is_file():
            state, finished = self._restore(last_path, scheduler, gen)
            if finished is not None:
                return finished

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        stopped_early = False
        epochs = tqdm(range(state["epoch"] + 1, cfg.max_epochs + 1), desc=cfg.desc, initial=state["epoch"],
                      total=cfg.max_epochs, disable=not cfg.progress or self.rank != 0, file=sys.stderr)
        for epoch in epochs:
            if cfg.patience is not None and state["bad_epochs"] >= cfg.patience:
                stopped_early = True
                break
            order = torch.randperm(n_train, generator=gen)
            train_logs, seconds = self._train_epoch(train, order, epoch, scheduler)
            metrics, eval_seconds = self.evaluate(valid, desc=f"{cfg.desc} valid")
            state["train_time_s"] += seconds
            state["train_samples"] += (steps_per_epoch * cfg.batch_size if cfg.drop_last else n_train)
            state["eval_time_s"] += eval_seconds
            state["eval_samples"] += split_size(valid)
            value = self._record_epoch(epoch, train_logs, metrics, state)
            state["epoch"] = epoch
            if self.guard is not None:
                state["guard"] = self.guard.state_dict()
            epochs.set_postfix({cfg.select_metric: f"{value:.4f}", "best": state["best_epoch"]})
            if self.out_dir is not None:
                self._save_last(scheduler, gen, state, done=False)
        else:
            stopped_early = cfg.patience is not None and state["bad_epochs"] >= cfg.patience
        if stopped_early:
            log.info("%s: no improvement of %s for %d epochs; stopped after epoch %d", cfg.desc,
                     cfg.select_metric, cfg.patience, state["epoch"])
        if state["best_value"] is None:
            raise TrainingDiverged(f"{cfg.desc}: the selection metric {cfg.select_metric!r} was never finite")

        # test once, on the selected model
        ddp.barrier()  # rank 0 wrote best.pt
        if self.out_dir is not None:
            self.model.load_state_dict(load_checkpoint(self.out_dir / "best.pt", self.device)["model"])
        elif self._best_in_memory is not None:
            self.model.load_state_dict(self._best_in_memory)
        test_metrics = None
        if test is not None:
            test_metrics, test_seconds = self.evaluate(test, desc=f"{cfg.desc} test")
            state["eval_time_s"] += test_seconds
            state["eval_samples"] += split_size(test)
        result = self._result(state, stopped_early, test_metrics)
        if self.out_dir is not None:
            self._save_last(scheduler, gen, state, done=True, result=result)
        return result

    def _restore(self, last_path: Path, scheduler, gen: torch.Generator) -> tuple[dict | None, dict | None]:
        """Continue from ``last_path``: ``(trainer state, None)``, or ``(None, result)`` for a finished run."""
        cfg = self.config
        ckpt = load_checkpoint(last_path, map_location=self.device)
        if self.fingerprint is not None and ckpt.get("fingerprint") != self.fingerprint:
            raise UserError(f"{last_path} was written by a run with other settings; start a new output "
                            "folder or rerun with the original settings")
        if ckpt.get("done"):
            log.info("%s: finished run found in %s, not training again", cfg.desc, last_path)
            require_entries(ckpt, last_path, ["result"])
            return None, ckpt["result"]
        require_entries(ckpt, last_path, ["model", "optimizer", "scheduler", "shuffle_generator", "rng", "state"])
        load_state_into(self.model, ckpt["model"], last_path)
        load_state_into(self.optimizer, ckpt["optimizer"], last_path, "optimizer")
        load_state_into(scheduler, ckpt["scheduler"], last_path, "scheduler")
        gen.set_state(ckpt["shuffle_generator"])
        per_rank = ckpt.get("rng_per_rank") or [ckpt["rng"]]
        if len(per_rank) != self.world_size:
            log.warning("%s: checkpoint written by %d process(es), resuming with %d: random streams differ "
                        "from an uninterrupted run", cfg.desc, len(per_rank), self.world_size)
        set_rng_state(per_rank[self.rank] if self.rank < len(per_rank) else ckpt["rng"])
        state = ckpt["state"]
        if self.guard is not None and "guard" in state:
            self.guard.load_state_dict(state["guard"])
        log.info("%s: resuming after epoch %d", cfg.desc, state["epoch"])
        return state, None

    def _record_epoch(self, epoch: int, train_logs: dict, metrics: dict, state: dict) -> float:
        """Log an epoch, keep the model if it is the best so far; the selection metric's value."""
        cfg = self.config
        if cfg.select_metric not in metrics:
            raise ValueError(f"selection metric {cfg.select_metric!r} is not among {sorted(metrics)}")
        value = metrics[cfg.select_metric]
        record = {"epoch": epoch, **train_logs, **{f"valid_{k}": v for k, v in metrics.items()},
                  "lr": self.optimizer.param_groups[0]["lr"]}
        state["history"].append(record)
        if self._improved(value, state["best_value"]):
            state["best_value"], state["best_epoch"], state["bad_epochs"] = value, epoch, 0
            state["best_valid"] = metrics
            if self.out_dir is not None and self.rank == 0:
                save_checkpoint(self.out_dir / "best.pt",
                                {"model": self.model.state_dict(), "epoch": epoch, "valid": metrics})
            elif self.out_dir is None:
                self._best_in_memory = copy.deepcopy({k: v.cpu() for k, v in self.model.state_dict().items()})
        else:
            state["bad_epochs"] += 1
        return value

    def _result(self, state: dict, stopped_early: bool, test_metrics: dict | None) -> dict:
        if self.device.type == "cuda":
            peak, kind = torch.cuda.max_memory_allocated(self.device) / 2**20, "cuda_max_allocated"
        else:
            peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_max_rss"
        return {
            "best_epoch": state["best_epoch"],
            "epochs_run": state["epoch"],
            "stopped_early": stopped_early,
            "selection": {"metric": self.config.select_metric, "mode": self.config.select_mode},
            "valid": state.get("best_valid"),
            "test": test_metrics,
            "history": state["history"],
            "train_time_s": state["train_time_s"],
            "train_samples_per_s": _rate(state["train_samples"], state["train_time_s"]),
            "eval_samples_per_s": _rate(state["eval_samples"], state["eval_time_s"]),
            "peak_memory_mb": peak,
            "memory_kind": kind,
            "device": str(self.device),
            "world_size": self.world_size,
            "guard": self.guard.summary() if self.guard is not None else None,
            "config": asdict(self.config),
        }

    def _save_last(self, scheduler, gen: torch.Generator, state: dict, done: bool,
                   result: dict | None = None):
        per_rank = ddp.all_gather_objects(rng_state())  # collective: every process calls this
        if self.rank != 0:
            return
        save_checkpoint(self.out_dir / self.checkpoint_name, {
            "rng_per_rank": per_rank,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "shuffle_generator": gen.get_state(),
            "rng": rng_state(),
            "state": state,
            "fingerprint": self.fingerprint,
            "done": done,
            "result": result,
        })
