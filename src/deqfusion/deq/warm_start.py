"""Warm starts: begin a solve at each sample's previous fixed point instead of the default initial state.

:class:`FixedPointCache` keeps one state per training sample, keyed by the sample's index in the data set. In
epoch-based training the same sample comes back once per epoch with slightly changed weights, so its last fixed
point is a much better start than zeros (full-batch training: last epoch's fixed point of the whole set). The
start does not change the gradient of the implicit backward, which depends only on the fixed point reached.

The cache never hands out an entry that does not fit: entries are dropped when the state's shape or dtype changes,
and the owner drops them when parameters are loaded. It follows the device of the states it is asked for.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

log = logging.getLogger(__name__)

__all__ = ["FixedPointCache"]


class FixedPointCache:
    """Per-sample fixed points for ``num_samples`` samples indexed ``0 .. num_samples - 1``.

    Args:
        num_samples: size of the index space (the data set).
        in_eval: also use (and update) the cache in evaluation mode (default: training only, so that evaluation
            results do not depend on what was trained before).
    """

    def __init__(self, num_samples: int, in_eval: bool = False):
        num_samples = int(num_samples)
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = num_samples
        self.in_eval = bool(in_eval)
        self.store: Tensor | None = None  # (num_samples, *state shape without the batch)
        self.valid: Tensor | None = None  # (num_samples,) bool: a fixed point was stored for that sample
        self.hits = 0
        self.lookups = 0

    def clear(self) -> None:
        """Forget every entry."""
        self.store = None
        self.valid = None

    def __len__(self) -> int:
        return 0 if self.valid is None else int(self.valid.sum())

    def check_ids(self, sample_ids, batch: int, device: torch.device) -> Tensor:
        """``sample_ids`` as a ``(batch,)`` long tensor on ``device``; raises naming the problem."""
        ids = torch.as_tensor(sample_ids, device=device)
        if ids.dim() != 1 or ids.shape[0] != batch:
            raise ValueError(f"sample_ids must be a 1-D tensor with one index per sample ({batch}), got shape "
                             f"{tuple(ids.shape)}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise TypeError(f"sample_ids must be integers, got {ids.dtype}")
        ids = ids.long()
        if batch and (int(ids.min()) < 0 or int(ids.max()) >= self.num_samples):
            raise ValueError(f"sample_ids must lie in [0, {self.num_samples}) (the warm-start cache was made for "
                             f"{self.num_samples} samples), got values in [{int(ids.min())}, {int(ids.max())}]")
        return ids

    def _fits(self, like: Tensor) -> bool:
        if self.store is None:
            return False
        if self.store.shape[1:] != like.shape[1:] or self.store.dtype != like.dtype:
            log.debug("warm-start cache dropped: it holds %s %s states, the solve needs %s %s",
                      tuple(self.store.shape[1:]), self.store.dtype, tuple(like.shape[1:]), like.dtype)
            self.clear()
            return False
        if self.store.device != like.device:
            self.store = self.store.to(like.device)
            self.valid = self.valid.to(like.device)
        return True

    def lookup(self, ids: Tensor, default: Tensor) -> Tensor:
        """The start of a solve: each sample's stored state where there is one, ``default``'s row elsewhere."""
        self.lookups += int(ids.numel())
        if not self._fits(default):
            return default
        hit = self.valid.index_select(0, ids)
        n_hit = int(hit.sum())
        self.hits += n_hit
        if n_hit == 0:
            return default
        cached = self.store.index_select(0, ids)
        if n_hit == ids.numel():
            return cached
        return torch.where(hit.view((-1,) + (1,) * (default.dim() - 1)), cached, default)

    def update(self, ids: Tensor, z: Tensor, keep: Tensor | None = None) -> None:
        """Store ``z`` (detached) as the samples' states; ``keep``: optional ``(B,)`` mask of the rows to store."""
        z = z.detach()
        if not self._fits(z):
            self.store = z.new_zeros((self.num_samples,) + tuple(z.shape[1:]))
            self.valid = torch.zeros(self.num_samples, dtype=torch.bool, device=z.device)
        if keep is not None and not bool(keep.all()):
            ids, z = ids[keep], z[keep]
        self.store.index_copy_(0, ids, z)
        self.valid.index_fill_(0, ids, True)
