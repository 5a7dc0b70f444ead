"""Peak memory of one call, on any device.

Two measurements, both relative to the state before the call (parameters and inputs that already exist are not
counted):

* ``tensor_peak_mb``: the peak of the bytes held by tensors created during the call (activations, solver
  history, saved tensors, gradients, temporaries). On CUDA this is the caching allocator's
  ``max_memory_allocated`` minus what was allocated at the start. On CPU, where PyTorch keeps no such statistic,
  a :class:`TensorMemoryTracker` (a ``TorchDispatchMode``) records every storage an operator creates and drops it
  when the storage is freed; it sees every operator of the forward and backward passes, but not the scratch
  space an operator uses internally and frees before returning.
* ``rss_peak_mb`` (Linux, CPU): the rise of the process's peak resident set size (``VmHWM``, reset through
  ``/proc/self/clear_refs``) over the resident size at the start. It includes allocator caching and fragmentation,
  so it is noisier; None where the kernel does not let the process reset its peak.

The tracker adds Python work to every operator: time a call and measure its memory in separate runs.
"""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

log = logging.getLogger(__name__)

__all__ = ["TensorMemoryTracker", "measure_peak_memory", "read_rss_mb", "reset_peak_rss"]

_MB = float(2**20)


class TensorMemoryTracker(TorchDispatchMode):
    """Track the bytes of tensor storages created by operators while the mode is active.

    ``current`` / ``peak`` are in bytes; ``peak`` is the largest ``current`` seen. A storage counts from the
    operator that created it until it is freed (even after the mode exits, ``current`` keeps falling as tracked
    storages die). Outputs that share storage with an input (views, in-place operators) are not new memory.

    >>> with TensorMemoryTracker() as tracker:  # doctest: +SKIP
    ...     loss = model(x).sum(); loss.backward()
    >>> tracker.peak / 2**20                    # doctest: +SKIP
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self.allocations = 0
        self._live: dict[int, tuple[weakref.ref, int]] = {}

    def _release(self, key: int) -> None:
        entry = self._live.pop(key, None)
        if entry is not None:
            self.current -= entry[1]

    def _track(self, storage) -> None:
        key = id(storage)
        if key in self._live and self._live[key][0]() is storage:
            return
        nbytes = int(storage.nbytes())
        ref = weakref.ref(storage, lambda _r, k=key: self._release(k))
        self._live[key] = (ref, nbytes)
        self.current += nbytes
        self.allocations += 1
        if self.current > self.peak:
            self.peak = self.current

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {id(t.untyped_storage()) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                st = t.untyped_storage()
                if id(st) not in inputs:
                    self._track(st)
        return out


# ----------------------------------------------------------------------------------------------- RSS (Linux)

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def read_rss_mb() -> tuple[float | None, float | None]:
    """``(current RSS, peak RSS)`` of this process in MiB from ``/proc/self/status`` (None where unavailable)."""
    rss, hwm = _status_kb("VmRSS"), _status_kb("VmHWM")
    return (None if rss is None else rss / 1024.0), (None if hwm is None else hwm / 1024.0)


def reset_peak_rss() -> bool:
    """Reset the process's peak RSS to its current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    rss, hwm = read_rss_mb()
    return rss is not None and hwm is not None and hwm <= rss + 1.0


# ---------------------------------------------------------------------------------------------- measurement


def measure_peak_memory(fn: Callable[[], object], device: str | torch.device = "cpu") -> dict:
    """Run ``fn()`` once and report its peak memory above the state before the call.

    Returns ``{"tensor_peak_mb", "tensor_kind", "rss_peak_mb"}``: ``tensor_kind`` is ``"cuda_max_allocated"`` or
    ``"cpu_dispatch_tracker"``; ``rss_peak_mb`` is None on CUDA and where the peak RSS cannot be reset.
    """
    device = torch.device(device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        return {"tensor_peak_mb": peak / _MB, "tensor_kind": "cuda_max_allocated", "rss_peak_mb": None}

    rss_ok = reset_peak_rss()
    rss0, _ = read_rss_mb()
    tracker = TensorMemoryTracker()
    with tracker:
        fn()
    _, hwm = read_rss_mb()
    rss_peak = (hwm - rss0) if (rss_ok and hwm is not None and rss0 is not None) else None
    if not rss_ok:
        log.debug("peak RSS cannot be reset on this system; rss_peak_mb not reported")
    return {"tensor_peak_mb": tracker.peak / _MB, "tensor_kind": "cpu_dispatch_tracker",
            "rss_peak_mb": rss_peak}
