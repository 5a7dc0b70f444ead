"""The two blocks of DEQ fusion.

A state is handed over as one tensor per modality, ``(B, C)`` for feature vectors or ``(B, C, L)`` for
sequences/maps, with channels at axis 1; the tensors may be strided views of the solver's packed state. A "channel
linear" map mixes channels only (a ``Linear`` on vectors, a 1x1 convolution on sequences). The per-modality
weights are stored stacked (``(N, C, C)``) but applied one modality at a time: on CPU, N plain matrix products
(which read the strided views in place) are faster than one batched product, and GroupNorm without affine
parameters followed by one fused multiply-add is faster than GroupNorm with them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GATE_ACTIVATIONS = {None: None, "none": None, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
FUSION_NORMS = ("relu_gn", "gn_relu")


def _lin_add(x: Tensor, weight: Tensor, add: Tensor, beta: float = 1.0) -> Tensor:
    """Channel-mixing linear map plus a term: ``weight x + beta * add`` for a ``(B, C)`` tensor (a ``Linear``) or a
    ``(B, C, L)`` one (a 1x1 convolution); ``add`` broadcasts against the output (``(O,)`` or ``(B, O)`` for
    vectors, ``(O, 1)`` or ``(B, O, L)`` for sequences, e.g. a bias through :func:`_channel_view`)."""
    if x.dim() == 2:
        return torch.addmm(add, x, weight.t(), beta=beta)
    out = torch.matmul(weight, x)
    return out.add_(add, alpha=beta) if beta != 1.0 else out.add_(add)


def _mixing(weight: Tensor, ndim: int) -> Tensor:
    """``weight`` as :func:`_lin_add` multiplies with it: transposed for ``(B, C)`` states (a view, no copy)."""
    return weight.t() if ndim == 2 else weight


def _lin_add_mixed(x: Tensor, mixing: Tensor, add: Tensor, beta: float = 1.0) -> Tensor:
    """:func:`_lin_add` with the weight already in :func:`_mixing`'s form (the same products, bit for bit)."""
    if x.dim() == 2:
        return torch.addmm(add, x, mixing, beta=beta)
    out = torch.matmul(mixing, x)
    return out.add_(add, alpha=beta) if beta != 1.0 else out.add_(add)


def _channel_view(v: Tensor, ndim: int) -> Tensor:
    """A per-channel vector ``(C,)`` shaped to broadcast against a ``(B, C)`` or ``(B, C, L)`` tensor."""
    return v if ndim == 2 else v[:, None]


def _sample_view(v: Tensor, ndim: int) -> Tensor:
    """A per-sample vector ``(B,)`` shaped to broadcast against a ``(B, C)`` or ``(B, C, L)`` tensor."""
    return v.view(-1, *([1] * (ndim - 1)))


def default_groups(channels: int, largest: int = 4, min_size: int = 4) -> int:
    """The GroupNorm group count used when none is given: the largest of ``largest, ..., 2`` that divides
    ``channels`` into groups of at least ``min_size`` channels, else 1. (With one channel per group a vector is
    mapped to a constant; with two, every output is +-1 and the map's Jacobian is huge where the two are close.)"""
    return next((g for g in range(min(largest, channels // min_size), 1, -1) if channels % g == 0), 1)


def _init_linear_(weight: Tensor, bias: Tensor | None, fan_in: int) -> None:
    # the default initialisation of torch.nn.Linear / Conv1d: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(weight, -bound, bound)
    if bias is not None:
        nn.init.uniform_(bias, -bound, bound)


class ModalityGroupNorm(nn.Module):
    """GroupNorm with separate affine parameters per modality, applied to one modality's state at a time."""

    def __init__(self, num_modalities: int, channels: int, groups: int):
        super().__init__()
        if channels % groups:
            raise ValueError(f"GroupNorm needs the width ({channels}) to be divisible by groups ({groups})")
        self.groups = groups
        self.weight = nn.Parameter(torch.ones(num_modalities, channels))
        self.bias = nn.Parameter(torch.zeros(num_modalities, channels))

    def affine(self, i: int, ndim: int) -> tuple[Tensor, Tensor]:
        """Modality ``i``'s ``(weight, bias)`` shaped for a state of ``ndim`` dimensions."""
        return _channel_view(self.weight[i], ndim), _channel_view(self.bias[i], ndim)

    def forward(self, x: Tensor, i: int, out: Tensor | None = None,
                affine: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Normalise modality ``i``'s state ``x`` (``(B, C[, L])``) and apply its affine parameters (``affine``:
        :meth:`affine`'s views, when the caller keeps them); ``out`` (outside autograd only) receives the result."""
        w, b = affine if affine is not None else self.affine(i, x.dim())
        return torch.addcmul(b, F.group_norm(x, self.groups, eps=1e-5), w, out=out)


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

    def prepare(self, x: Tensor) -> list[Tensor]:
        """The loop-invariant part of the second linear map, ``x_i + c2_i`` per modality (once per solve).

        ``x``: the projected features, modality-major ``(N, B, C[, L])``.
        """
        return [xi + _channel_view(b, xi.dim()) for xi, b in zip(x.unbind(0), self.b2.unbind(0))]

    def views(self, ndim: int) -> list[tuple]:
        """Per modality, the parameters as the evaluation uses them (views, no copies): the two mixing weights,
        the first bias and the three norms' affine pairs. A solver evaluating the map many times with unchanged
        parameters takes them once instead of slicing them in every evaluation."""
        return [(_mixing(self.w1[i], ndim), _channel_view(self.b1[i], ndim), _mixing(self.w2[i], ndim),
                 self.gn1.affine(i, ndim), self.gn2.affine(i, ndim), self.gn3.affine(i, ndim))
                for i in range(self.w1.shape[0])]

    def forward(self, zs: Sequence[Tensor], x_plus_b2: Sequence[Tensor],
                out: Sequence[Tensor] | None = None, views: list[tuple] | None = None) -> list[Tensor]:
        """New states of every modality from their states ``zs`` and the prepared injections.

        ``out``: optional tensors (views of the caller's packed output) that receive the new states, which saves
        a copy when gradients are not tracked (``out=`` is not differentiable). ``views``: :meth:`views`' output,
        when the caller keeps it.
        """
        views = views if views is not None else self.views(zs[0].dim())
        new = []
        for i, (z, (w1, b1, w2, n1, n2, n3)) in enumerate(zip(zs, views)):
            a = self.gn1(_lin_add_mixed(z, w1, b1), i, affine=n1).relu_()
            u = self.gn2(_lin_add_mixed(a, w2, x_plus_b2[i]), i, affine=n2)
            new.append(self.gn3(u.add_(z).relu_(), i, out=None if out is None else out[i], affine=n3))
        return new


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

    def prepare(self, x_fuse: Tensor) -> Tensor:
        """The loop-invariant part of the combining map, ``x_fuse + c_f`` (once per solve)."""
        return x_fuse + _channel_view(self.fuse_bias, x_fuse.dim())

    def views(self, ndim: int) -> tuple:
        """The parameters as the evaluation uses them (views): gate and combining weights, gate bias, the norm's
        affine pair (see :meth:`UnimodalBlocks.views`)."""
        return (_mixing(self.gate_weight, ndim), _channel_view(self.gate_bias, ndim), _mixing(self.fuse_weight, ndim),
                _channel_view(self.norm.weight, ndim), _channel_view(self.norm.bias, ndim))

    def forward(self, zu: Sequence[Tensor], zf: Tensor, x_fuse_plus_cf: Tensor, keep: Sequence[Tensor] | None,
                out: Tensor | None = None, views: tuple | None = None) -> Tensor:
        """``zu``: the new unimodal states, one ``(B, C[, L])`` tensor per modality (already zero where absent);
        ``zf``: the fused state; ``x_fuse_plus_cf``: :meth:`prepare`'s output; ``keep``: None (all present) or one
        presence multiplier per modality, shaped by :func:`_sample_view`; ``out``: optional tensor that receives
        the result (outside autograd only); ``views``: :meth:`views`' output, when the caller keeps it."""
        gate_w, gate_b, fuse_w, w, b = views if views is not None else self.views(zf.dim())
        if self.purify and self._squash is None:
            # the gate is affine, so sum_i m_i alpha_i = W_g (sum_i m_i z_i' + k z_f) + k c_g with k = sum_i m_i:
            # one gate product for all modalities instead of one per modality
            if keep is None:
                s = torch.add(zu[0], zf, alpha=len(zu))
                for zi in zu[1:]:
                    s = s.add_(zi)
                alpha = _lin_add_mixed(s, gate_w, gate_b, beta=float(len(zu)))
            else:
                k = sum(keep)
                s = sum(zi * m for zi, m in zip(zu, keep)).addcmul_(zf, k)
                alpha = _lin_add_mixed(s, gate_w, k * gate_b)
            combined = zf * alpha
        elif self.purify:
            combined = 0
            for i, zi in enumerate(zu):
                g = zf * self._squash(_lin_add_mixed(zi + zf, gate_w, gate_b))
                combined = combined + (g if keep is None else g * keep[i])
        else:
            combined = sum(zu if keep is None else (zi * m for zi, m in zip(zu, keep)))
        u = _lin_add_mixed(combined, fuse_w, x_fuse_plus_cf)
        if self.norm_order == "relu_gn":
            return torch.addcmul(b, F.group_norm(u.relu_(), self.norm.num_groups, eps=self.norm.eps), w, out=out)
        return torch.addcmul(b, F.group_norm(u, self.norm.num_groups, eps=self.norm.eps), w, out=out).relu_()
