"""Multi-process training with PyTorch's distributed data parallel, as launched by ``torchrun``.

``torchrun --nproc_per_node=N -m deqfusion.cli <command> ...`` starts N processes with ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` in their environment. :func:`setup_from_env` joins them into one process group
(``gloo`` on CPU, ``nccl`` on CUDA) and picks each process's device; the mini-batch trainer then shards every
batch across processes, averages gradients through :class:`torch.nn.parallel.DistributedDataParallel`, gathers
evaluation predictions from every process, and writes files from rank 0 only. Without ``torchrun`` (or with one
process) every helper here is a no-op and training runs as usual.
"""

from __future__ import annotations

import gc
import logging
import os

import torch
import torch.distributed as dist
from torch import Tensor

from ..errors import UserError

log = logging.getLogger(__name__)

__all__ = ["DistributedError", "check_global_batch",
           "setup_from_env", "cleanup", "is_distributed", "world_size", "rank", "is_main", "barrier",
           "all_reduce_sum", "gather_rows", "shard_order", "all_gather_objects"]


class DistributedError(UserError, ValueError):
    """A setting that multi-process training cannot honour (e.g. a batch the processes cannot share evenly)."""


def check_global_batch(batch_size: int, num_replicas: int | None = None, option: str = "--batch-size") -> int:
    """The per-process share of the global ``batch_size``; a :class:`DistributedError` naming ``option`` when the
    number of processes does not divide it (the processes would otherwise see batches of different sizes, and
    step ``k`` would no longer cover the samples of a one-process run's step ``k``)."""
    n = world_size() if num_replicas is None else int(num_replicas)
    if batch_size < 1:
        raise DistributedError(f"{option} must be >= 1, got {batch_size}")
    if batch_size % n:
        lo = max(n, batch_size - batch_size % n)
        raise DistributedError(f"{option} {batch_size} (the global batch) is not divisible by the {n} processes; "
                               f"pass a multiple of {n} (e.g. {lo} or {lo + n})")
    return batch_size // n


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """True on the process that writes files (rank 0, or the only process)."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def setup_from_env(device: str = "cpu", timeout_s: float = 600.0) -> str:
    """Join the process group described by ``torchrun``'s environment variables, if any.

    Args:
        device: the requested device, ``"cpu"`` or ``"cuda"`` (``"cuda:k"`` is replaced by the process's
            ``LOCAL_RANK`` under torchrun).
    Returns:
        The device this process should use.
    """
    try:
        kind = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise DistributedError(f"--device {device!r} is not a torch device; pass cpu, cuda or cuda:N") from None
    cuda = kind.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise DistributedError(f"--device {device} was requested but CUDA is not available; pass --device cpu")
    n = int(os.environ.get("WORLD_SIZE", "1"))
    if n <= 1 or not dist.is_available():
        if cuda and kind.index is not None and kind.index >= torch.cuda.device_count():
            raise DistributedError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        from datetime import timedelta

        dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
        log.info("joined process group: rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(),
                 dist.get_backend())
    return device


def cleanup() -> None:
    """Leave the process group (no-op without one).

    Unreferenced ``DistributedDataParallel`` wrappers are collected first, while the group and the interpreter are
    alive: a wrapper's reducer left for the interpreter's exit can abort the process there (gloo's threads still
    hold its work objects). Callers drop their own references to a wrapper before calling this."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum of ``t`` over processes (``t`` itself without a process group)."""
    if is_distributed():
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_rows(t: Tensor) -> Tensor:
    """Concatenate the rows of ``t`` from every process in rank order (row counts may differ by process)."""
    if not is_distributed():
        return t
    n = torch.tensor([t.shape[0]], device=t.device)
    counts = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(counts, n)
    counts = [int(c) for c in counts]
    padded = t.new_zeros((max(counts),) + tuple(t.shape[1:]))
    padded[: t.shape[0]] = t
    out = [torch.zeros_like(padded) for _ in counts]
    dist.all_gather(out, padded.contiguous())
    return torch.cat([o[:c] for o, c in zip(out, counts)])


def all_gather_objects(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` without a process group)."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def shard_order(order: Tensor, num_replicas: int | None = None, rank_: int | None = None) -> Tensor:
    """This process's share of a (shuffled) sample order, as :class:`~torch.utils.data.DistributedSampler`
    assigns it: padded to a multiple of the process count by repeating its start, then every
    ``num_replicas``-th position from ``rank``.

    With per-process batches of ``B / num_replicas``, step ``k`` of all processes together covers exactly
    positions ``[k B, (k + 1) B)`` of ``order``: the global batch of a single-process run with batch ``B``.
    """
    from torch.utils.data import DistributedSampler

    num_replicas = world_size() if num_replicas is None else num_replicas
    rank_ = rank() if rank_ is None else rank_
    if num_replicas == 1:
        return order
    sampler = DistributedSampler(range(order.numel()), num_replicas=num_replicas, rank=rank_, shuffle=False)
    return order[torch.as_tensor(list(sampler), dtype=torch.long)]
