"""Samples for the trainer: a stratified validation split, and splits cut into batches.

A *split* is a mapping ``name -> tensor`` whose tensors share their first (sample) dimension, e.g. ``{"text":
(n, 300), "image": (n, 4096), "labels": (n, 23)}``; a value may be None (a modality absent from every sample),
which batches pass through as None.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

__all__ = ["Split", "stratified_split", "split_size", "iterate_batches", "to_device"]

Split = Mapping[str, Tensor | None]


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


def split_size(split: Split, name: str = "split") -> int:
    """Number of samples in a split; raises ``ValueError`` if its tensors disagree or it is empty."""
    if not isinstance(split, Mapping) or not split:
        raise ValueError(f"{name} must be a non-empty mapping of tensors")
    sizes = {k: int(v.shape[0]) for k, v in split.items() if v is not None}
    if not sizes:
        raise ValueError(f"{name} holds no tensors")
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
            yield {k: None if v is None else v[lo : lo + batch_size] for k, v in split.items()}
        else:
            idx = order[lo : lo + batch_size]
            yield {k: None if v is None else v[idx.to(v.device)] for k, v in split.items()}


def to_device(split: Split, device) -> dict:
    return {k: None if v is None else v.to(device) for k, v in split.items()}
