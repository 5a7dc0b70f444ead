"""The simplest fusions, used as baselines: concatenation and summation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import FusionModule
from .registry import register_fusion


@register_fusion("concat")
class ConcatFusion(FusionModule):
    """Concatenate the modality features and map them to ``out_dim`` with one Linear layer.

    An absent modality (``None`` or masked out) is imputed with zeros.
    """

    def __init__(self, in_dims: Sequence[int], out_dim: int, names: Sequence[str] | None = None):
        super().__init__(in_dims, names)
        self.out_dim = int(out_dim)
        self.linear = nn.Linear(sum(self.in_dims), self.out_dim)

    def fuse(self, xs, mask):
        ref = next(x for x in xs if x is not None)
        parts = []
        for i, x in enumerate(xs):
            if x is None:
                x = ref.new_zeros(ref.shape[0], self.in_dims[i])
            elif mask is not None:
                x = x * mask[:, i : i + 1].to(x.dtype)
            parts.append(x)
        return self.linear(torch.cat(parts, dim=1)), self.no_info(ref)


@register_fusion("sum")
class SumFusion(FusionModule):
    """Project each modality to ``out_dim`` with its own Linear layer and sum the projections (absent: left out)."""

    def __init__(self, in_dims: Sequence[int], out_dim: int, names: Sequence[str] | None = None):
        super().__init__(in_dims, names)
        self.out_dim = int(out_dim)
        self.proj = nn.ModuleList([nn.Linear(d, self.out_dim) for d in self.in_dims])

    def fuse(self, xs, mask):
        ref = next(x for x in xs if x is not None)
        out: Tensor | None = None
        for i, (x, p) in enumerate(zip(xs, self.proj)):
            if x is None:
                continue
            y = p(x)
            if mask is not None:
                y = y * mask[:, i : i + 1].to(y.dtype)
            out = y if out is None else out + y
        return out, self.no_info(ref)
