"""Multiplicative baseline fusions: tensor fusion, low-rank tensor fusion and MI-matrix.

These are the comparison points of the MM-IMDB table (and usable for any vector-per-modality task). Each is a
:class:`~deqfusion.fusion.base.FusionModule` registered under a name and built as
``cls(in_dims=[...], out_dim=D, names=None, **options)``; each is called as ``fused, info = fusion(xs, mask)``
and returns ``(B, out_dim)`` with a zero Jacobian loss.

Missing modalities (``None`` in the input list, or False in the ``(B, N)`` presence mask) are zero-imputed.
For tensor and low-rank fusion the constant 1 appended to every modality keeps the terms of the present
modalities alive when another one is zeroed, so a missing modality removes exactly its own interaction terms.

* ``tensor`` (Zadeh et al., 2017): ``vec([1; x_1] (x) [1; x_2] (x) ... )`` (outer product of the modality
  vectors, each extended by a constant 1), then a Linear layer to ``out_dim``. The outer product has
  ``prod(d_i + 1)`` entries: with two 512-d modalities the Linear holds about 135 M weights.
* ``lowrank`` (Liu et al., 2018): the same multilinear map with its weight tensor factorised in rank ``rank``
  (default 128): ``h = sum_r w_r * prod_i ([1; x_i] @ F_i[r]) + b`` with factors ``F_i`` of shape
  ``(rank, d_i + 1, out_dim)`` held as ``nn.Parameter``.
* ``mi_matrix`` (Jayakumar et al., 2020, "multiplicative interactions", matrix form): one modality generates
  the weights of a linear map applied to the other, ``h = x_1^T W x_2 + x_1 U + x_2 V + b`` with a 3-way
  weight tensor ``W`` of shape ``(d_1, d_2, out_dim)``. With more than two modalities, the pairs are chained
  left to right: ``h_2 = MI(x_1, x_2)``, ``h_3 = MI(h_2, x_3)``, ...
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import FusionModule
from .info import FusionInfo
from .registry import register_fusion

__all__ = ["TensorFusion", "LowRankTensorFusion", "MIMatrixFusion", "zero_impute"]

#: refuse to build a tensor-fusion Linear with more weights than this (it would not fit any GPU)
MAX_TENSOR_FUSION_WEIGHTS = 2_000_000_000


def zero_impute(xs: Sequence[Tensor | None], mask: Tensor | None, in_dims: Sequence[int]) -> list[Tensor]:
    """Dense inputs with absent modalities set to zero.

    ``None`` entries become ``(B, in_dims[i])`` zeros (batch size, device and dtype of the first present
    input); where ``mask[b, i]`` is False, row ``b`` of modality ``i`` is zeroed.
    """
    ref = next(x for x in xs if x is not None)
    out = []
    for i, x in enumerate(xs):
        if x is None:
            x = ref.new_zeros(ref.shape[0], in_dims[i])
        elif mask is not None:
            x = x * mask[:, i : i + 1].to(dtype=x.dtype)
        out.append(x)
    return out


class _ImputingFusion(FusionModule):
    """Shared parts of the baselines: the fused width, zero imputation and the appended constant 1.

    Every baseline takes ``in_dims`` (per-modality feature sizes), ``out_dim`` (size of the fused output) and
    optional modality ``names``, then its own options.
    """

    def __init__(self, in_dims: Sequence[int], out_dim: int, names: Sequence[str] | None = None):
        super().__init__(in_dims, names)
        if int(out_dim) <= 0:
            raise ValueError(f"out_dim must be positive, got {out_dim}")
        self.out_dim = int(out_dim)

    def _impute(self, xs: list[Tensor | None], mask: Tensor | None) -> list[Tensor]:
        return zero_impute(xs, mask, self.in_dims)

    @staticmethod
    def _with_one(x: Tensor) -> Tensor:
        return torch.cat([x.new_ones(x.shape[0], 1), x], dim=1)


@register_fusion("tensor")
class TensorFusion(_ImputingFusion):
    """Tensor fusion: outer product of the modality vectors with an appended 1, then Linear to ``out_dim``.

    Args:
        in_dims, out_dim, names: as for every baseline (sizes of the inputs and of the output, names).
        bias: whether the output Linear has a bias (default True).
    """

    def __init__(self, in_dims: Sequence[int], out_dim: int, names: Sequence[str] | None = None,
                 bias: bool = True):
        super().__init__(in_dims, out_dim, names)
        self.tensor_dim = math.prod(d + 1 for d in self.in_dims)
        n_weights = self.tensor_dim * self.out_dim
        if n_weights > MAX_TENSOR_FUSION_WEIGHTS:
            raise ValueError(
                f"tensor fusion of dims {self.in_dims} into {self.out_dim} needs {n_weights:,} weights "
                f"(product of (d_i + 1) = {self.tensor_dim:,}); project the modalities to smaller sizes "
                "first or use the 'lowrank' fusion"
            )
        self.linear = nn.Linear(self.tensor_dim, self.out_dim, bias=bias)

    def fuse(self, xs, mask) -> tuple[Tensor, FusionInfo]:
        dense = [self._with_one(x) for x in self._impute(xs, mask)]
        outer = dense[0]
        for x in dense[1:]:
            # (B, a) x (B, b) -> (B, a * b), row-major: index (i, j) -> i * b + j
            outer = (outer.unsqueeze(2) * x.unsqueeze(1)).flatten(1)
        fused = self.linear(outer)
        return fused, self.no_info(fused)


@register_fusion("lowrank")
class LowRankTensorFusion(_ImputingFusion):
    """Low-rank multimodal fusion: a rank-``rank`` factorisation of the tensor-fusion weights.

    Args:
        in_dims, out_dim, names: as for every baseline (sizes of the inputs and of the output, names).
        rank: number of rank-1 terms (default 128).

    Parameters: ``factors[i]`` of shape ``(rank, in_dims[i] + 1, out_dim)``, ``rank_weights`` ``(rank,)`` and
    ``bias`` ``(out_dim,)``, all registered ``nn.Parameter`` (optimisers, ``.to()`` and state dicts see them).
    """

    def __init__(self, in_dims: Sequence[int], out_dim: int, names: Sequence[str] | None = None,
                 rank: int = 128):
        super().__init__(in_dims, out_dim, names)
        if int(rank) <= 0:
            raise ValueError(f"rank must be positive, got {rank}")
        self.rank = int(rank)
        self.factors = nn.ParameterList(
            [nn.Parameter(torch.empty(self.rank, d + 1, self.out_dim)) for d in self.in_dims]
        )
        self.rank_weights = nn.Parameter(torch.empty(self.rank))
        self.bias = nn.Parameter(torch.zeros(self.out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Each factor is a (d+1) -> out linear map per rank; scaled like a Linear layer so that every
        # modality's projection has about unit variance, and average the rank terms with weights ~ 1/rank.
        for f, d in zip(self.factors, self.in_dims, strict=True):
            nn.init.normal_(f, std=1.0 / math.sqrt(d + 1))
        nn.init.normal_(self.rank_weights, mean=1.0 / self.rank, std=1.0 / self.rank)
        nn.init.zeros_(self.bias)

    def fuse(self, xs, mask) -> tuple[Tensor, FusionInfo]:
        prod = None
        for x, f in zip(self._impute(xs, mask), self.factors, strict=True):
            # (B, d+1) . (R, d+1, out) -> (B, R, out)
            proj = torch.einsum("bd,rdo->bro", self._with_one(x), f)
            prod = proj if prod is None else prod * proj
        fused = torch.einsum("bro,r->bo", prod, self.rank_weights) + self.bias
        return fused, self.no_info(fused)


class _MIPair(nn.Module):
    """``h = a^T W b + a U + b V + c``: the first input generates a linear map applied to the second."""

    def __init__(self, d_a: int, d_b: int, out_dim: int):
        super().__init__()
        self.d_a, self.d_b, self.out_dim = d_a, d_b, out_dim
        self.weight = nn.Parameter(torch.empty(d_a, d_b, out_dim))
        self.u = nn.Parameter(torch.empty(d_a, out_dim))
        self.v = nn.Parameter(torch.empty(d_b, out_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # unit-variance inputs give about unit-variance output terms
        nn.init.normal_(self.weight, std=1.0 / math.sqrt(self.d_a * self.d_b))
        nn.init.normal_(self.u, std=1.0 / math.sqrt(self.d_a))
        nn.init.normal_(self.v, std=1.0 / math.sqrt(self.d_b))
        nn.init.zeros_(self.bias)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        # W(a): (B, d_b * out) -> (B, d_b, out), applied to b
        generated = (a @ self.weight.reshape(self.d_a, -1)).reshape(a.shape[0], self.d_b, self.out_dim)
        inter = torch.bmm(b.unsqueeze(1), generated).squeeze(1)
        return inter + a @ self.u + b @ self.v + self.bias


@register_fusion("mi_matrix")
class MIMatrixFusion(_ImputingFusion):
    """Multiplicative interactions in matrix form (MI-matrix); chained left to right for more than 2 inputs.

    Args:
        in_dims, out_dim, names: as for every baseline (sizes of the inputs and of the output, names).

    The pair ``(x_1, x_2)`` holds a ``(d_1, d_2, out_dim)`` weight tensor (134 M weights for 512/512/512).
    """

    def __init__(self, in_dims: Sequence[int], out_dim: int, names: Sequence[str] | None = None):
        super().__init__(in_dims, out_dim, names)
        pairs = [_MIPair(self.in_dims[0], self.in_dims[1], self.out_dim)]
        pairs += [_MIPair(self.out_dim, d, self.out_dim) for d in self.in_dims[2:]]
        self.pairs = nn.ModuleList(pairs)

    def fuse(self, xs, mask) -> tuple[Tensor, FusionInfo]:
        dense = self._impute(xs, mask)
        h = self.pairs[0](dense[0], dense[1])
        for pair, x in zip(self.pairs[1:], dense[2:], strict=True):
            h = pair(h, x)
        return h, self.no_info(h)
