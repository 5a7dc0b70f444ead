"""The two blocks of DEQ fusion, vectorised over modalities.

States are laid out modality-major: ``(N, B, C)`` for feature vectors or ``(N, B, C, L)`` for sequences/maps, with
channels at axis 2. A "channel linear" map mixes channels only (a ``Linear`` on vectors, a 1x1 convolution on
sequences); the N per-modality blocks are evaluated together with one batched matrix product, and their
GroupNorms with one call (each modality keeps its own weights and affine parameters).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GATE_ACTIVATIONS = {None: None, "none": None, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
FUSION_NORMS = ("relu_gn", "gn_relu")


def _lin(x: Tensor, weight: Tensor, bias: Tensor | None, seq: bool) -> Tensor:
    """Channel-mixing linear map with a shared weight (O, C).

    ``seq=False``: channels are the last axis (``(..., C)``). ``seq=True``: channels are the second-to-last axis
    (``(..., C, L)``), i.e. a 1x1 convolution.
    """
    if not seq:
        return F.linear(x, weight, bias)
    out = torch.matmul(weight, x)
    return out if bias is None else out + bias[:, None]


def _init_linear_(weight: Tensor, bias: Tensor | None, fan_in: int) -> None:
    # the default initialisation of torch.nn.Linear / Conv1d: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(weight, -bound, bound)
    if bias is not None:
        nn.init.uniform_(bias, -bound, bound)


class ModalityGroupNorm(nn.Module):
    """GroupNorm with separate affine parameters per modality, applied to a modality-major state."""

    def __init__(self, num_modalities: int, channels: int, groups: int):
        super().__init__()
        if channels % groups:
            raise ValueError(f"GroupNorm needs the width ({channels}) to be divisible by groups ({groups})")
        self.groups = groups
        self.weight = nn.Parameter(torch.ones(num_modalities, channels))
        self.bias = nn.Parameter(torch.zeros(num_modalities, channels))

    def forward(self, x: Tensor) -> Tensor:  # x: (N, B, C) or (N, B, C, L)
        n, b = x.shape[:2]
        y = F.group_norm(x.reshape(n * b, *x.shape[2:]), self.groups, eps=1e-5).reshape(x.shape)
        shape = (n, 1, x.shape[2]) + (1,) * (x.dim() - 3)
        return torch.addcmul(self.bias.view(shape), y, self.weight.view(shape))


class UnimodalBlocks(nn.Module):
    """N independent per-modality blocks: ``z' = GN3(ReLU(GN2(W2 ReLU(GN1(W1 z + c1)) + c2 + x) + z))``.

    Each modality ``i`` sees only its own state ``z_i`` and injection ``x_i``.
    """

    def __init__(self, num_modalities: int, channels: int, groups: int = 4):
        super().__init__()
        n, c = num_modalities, channels
        self.w1 = nn.Parameter(torch.empty(n, c, c))
        self.b1 = nn.Parameter(torch.empty(n, c))
        self.w2 = nn.Parameter(torch.empty(n, c, c))
        self.b2 = nn.Parameter(torch.empty(n, c))
        for i in range(n):
            _init_linear_(self.w1.data[i], self.b1.data[i], c)
            _init_linear_(self.w2.data[i], self.b2.data[i], c)
        self.gn1 = ModalityGroupNorm(n, c, groups)
        self.gn2 = ModalityGroupNorm(n, c, groups)
        self.gn3 = ModalityGroupNorm(n, c, groups)

    @staticmethod
    def _mix(z: Tensor, w: Tensor, add: Tensor) -> Tensor:
        """``w_i z_i + add_i`` per modality; ``add`` broadcasts against the output."""
        if z.dim() == 3:  # (N, B, C) @ (N, C, O) -> (N, B, O)
            return torch.baddbmm(add, z, w.transpose(1, 2))
        return torch.matmul(w[:, None], z) + add  # (N, 1, O, C) @ (N, B, C, L)

    def bias_shape(self, x: Tensor) -> tuple[int, ...]:
        return (x.shape[0], 1, x.shape[2]) + (1,) * (x.dim() - 3)

    def prepare(self, x: Tensor) -> Tensor:
        """The loop-invariant part of the second linear map: ``x + c2`` (computed once per solve)."""
        return x + self.b2.view(self.bias_shape(x))

    def forward(self, z: Tensor, x: Tensor, x_plus_b2: Tensor | None = None) -> Tensor:
        if x_plus_b2 is None:
            x_plus_b2 = self.prepare(x)
        a = self.gn1(self._mix(z, self.w1, self.b1.view(self.bias_shape(z)))).relu_()
        u = self.gn2(self._mix(a, self.w2, x_plus_b2))
        return self.gn3(u.add_(z).relu_())


class PurifyFuseBlock(nn.Module):
    """The fusion block: purify each modality with a gate, then combine.

    ``alpha_i = W_g (z_i' + z_f) + c_g`` (one gate shared by all modalities, optionally squashed),
    ``g_i = z_f * alpha_i``, ``u = W_f sum_i g_i + c_f + x_fuse``, ``z_f' = GN(ReLU(u))`` (or ``ReLU(GN(u))``).
    Without purification (``purify=False``, an ablation) the block combines ``sum_i z_i'`` directly.
    """

    def __init__(self, channels: int, groups: int = 4, norm_order: str = "relu_gn",
                 gate_activation: str | None = None, purify: bool = True):
        super().__init__()
        if norm_order not in FUSION_NORMS:
            raise ValueError(f"fusion_norm must be one of {FUSION_NORMS}, got {norm_order!r}")
        if gate_activation not in GATE_ACTIVATIONS:
            raise ValueError(f"gate_activation must be one of {sorted(k for k in GATE_ACTIVATIONS if k)} or None, "
                             f"got {gate_activation!r}")
        if channels % groups:
            raise ValueError(f"GroupNorm needs the width ({channels}) to be divisible by groups ({groups})")
        c = channels
        self.purify = purify
        self.norm_order = norm_order
        self.gate_activation = gate_activation
        self._squash = GATE_ACTIVATIONS[gate_activation]
        self.gate_weight = nn.Parameter(torch.empty(c, c))
        self.gate_bias = nn.Parameter(torch.empty(c))
        self.fuse_weight = nn.Parameter(torch.empty(c, c))
        self.fuse_bias = nn.Parameter(torch.empty(c))
        _init_linear_(self.gate_weight, self.gate_bias, c)
        _init_linear_(self.fuse_weight, self.fuse_bias, c)
        if not purify:
            self.gate_weight.requires_grad_(False)
            self.gate_bias.requires_grad_(False)
        self.norm = nn.GroupNorm(groups, c)

    def forward(self, zu: Tensor, zf: Tensor, x_fuse: Tensor, mask: Tensor | None) -> Tensor:
        """``zu``: new unimodal states (N, B, C[, L]); ``zf``: fused state (B, C[, L]); ``mask``: (N, B) or None."""
        seq = zf.dim() == 3
        if self.purify:
            alpha = _lin(zu + zf, self.gate_weight, self.gate_bias, seq)
            if self._squash is not None:
                alpha = self._squash(alpha)
            terms = zf * alpha
        else:
            terms = zu
        if mask is not None:
            terms = terms * mask.view(mask.shape + (1,) * (terms.dim() - 2))
        u = _lin(terms.sum(0), self.fuse_weight, self.fuse_bias, seq) + x_fuse
        if self.norm_order == "relu_gn":
            return self.norm(F.relu(u))
        return F.relu(self.norm(u))
