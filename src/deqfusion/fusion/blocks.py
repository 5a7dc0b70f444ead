"""The two blocks of DEQ fusion.

A state is ``(B, C)`` for feature vectors or ``(B, C, L)`` for sequences/maps, with channels at axis 1; a "channel
linear" map mixes channels only (a ``Linear`` on vectors, a 1x1 convolution on sequences). The per-modality
blocks take every modality's state at once, modality-major (``(N, B, C[, L])``, possibly a strided view of the
solver's packed state), with their weights stacked (``(N, C, C)``): one batched product, one GroupNorm and one
fused multiply-add per layer for all modalities, whatever N (at small shapes the cost is per operation, not per
element). GroupNorm without affine parameters followed by one fused multiply-add is faster than GroupNorm with
them.
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


def _modality_view(v: Tensor, ndim: int) -> Tensor:
    """A per-modality, per-channel tensor ``(N, C)`` shaped to broadcast against a modality-major state
    ``(N, B, C)`` or ``(N, B, C, L)`` (``ndim`` 3 or 4)."""
    return v.view((v.shape[0], 1, v.shape[1]) + (1,) * (ndim - 3))


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
    """GroupNorm with separate affine parameters per modality, applied to all modalities' states at once."""

    def __init__(self, num_modalities: int, channels: int, groups: int):
        super().__init__()
        if channels % groups:
            raise ValueError(f"GroupNorm needs the width ({channels}) to be divisible by groups ({groups})")
        self.groups = groups
        self.weight = nn.Parameter(torch.ones(num_modalities, channels))
        self.bias = nn.Parameter(torch.zeros(num_modalities, channels))

    def affine(self, ndim: int) -> tuple[Tensor, Tensor]:
        """The ``(weight, bias)`` pair shaped to broadcast against a modality-major state ``(N, B, C[, L])`` of
        ``ndim`` dimensions."""
        return _modality_view(self.weight, ndim), _modality_view(self.bias, ndim)

    def forward(self, x: Tensor, out: Tensor | None = None, affine: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Normalise every modality's state in ``x`` (contiguous, ``(N, B, C[, L])``) and apply each modality's
        affine parameters (``affine``: :meth:`affine`'s views, when the caller keeps them); ``out`` (outside autograd
        only) receives the result."""
        w, b = affine if affine is not None else self.affine(x.dim())
        n, bsz = x.shape[:2]
        normed = F.group_norm(x.view((n * bsz,) + x.shape[2:]), self.groups, eps=1e-5).view(x.shape)
        return torch.addcmul(b, normed, w, out=out)


def _batched_lin_add(x: Tensor, mixing: Tensor, add: Tensor) -> Tensor:
    """Per-modality channel-mixing maps plus a term for a modality-major state ``x`` (``(N, B, C[, L])``):
    ``mixing`` is ``(N, C, O)`` (transposed weights) for vectors, one batched product, and ``(N, O, C)`` for
    sequences, one product per modality (a batched product would multiply ``N x B`` small matrices)."""
    if x.dim() == 3:
        return torch.baddbmm(add, x, mixing)
    return torch.stack([torch.matmul(w, xi) for w, xi in zip(mixing.unbind(0), x.unbind(0))]).add_(add)


class UnimodalBlocks(nn.Module):
    """N independent per-modality blocks: ``z' = GN3(ReLU(GN2(W2 ReLU(GN1(W1 z + c1)) + c2 + x) + z))``.

    Each modality ``i`` sees only its own state ``z_i`` and injection ``x_i``; all are computed together.
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

    def prepare(self, x: Tensor) -> Tensor:
        """The loop-invariant part of the second linear map, ``x_i + c2_i`` for every modality (once per solve).

        ``x``: the projected features, modality-major ``(N, B, C[, L])``.
        """
        return x + _modality_view(self.b2, x.dim())

    def views(self, ndim: int) -> tuple:
        """The parameters as the evaluation of a modality-major state of ``ndim`` dimensions uses them (views, no
        copies): the two mixing weights, the first bias and the three norms' affine pairs. A solver evaluating
        the map many times with unchanged parameters takes them once instead of reshaping them in every
        evaluation."""
        w1, w2 = (self.w1.transpose(1, 2), self.w2.transpose(1, 2)) if ndim == 3 else (self.w1, self.w2)
        return (w1, _modality_view(self.b1, ndim), w2,
                self.gn1.affine(ndim), self.gn2.affine(ndim), self.gn3.affine(ndim))

    def forward(self, z: Tensor, x_plus_b2: Tensor, out: Tensor | None = None,
                views: tuple | None = None) -> Tensor:
        """New states of every modality, ``(N, B, C[, L])``, from their states ``z`` (modality-major, may be a
        strided view) and :meth:`prepare`'s output.

        ``out``: an optional tensor of ``z``'s shape (e.g. a view of the caller's packed output) that receives the
        new states, which saves a copy when gradients are not tracked (``out=`` is not differentiable). ``views``:
        :meth:`views`' output, when the caller keeps it.
        """
        w1, b1, w2, n1, n2, n3 = views if views is not None else self.views(z.dim())
        a = self.gn1(_batched_lin_add(z, w1, b1), affine=n1).relu_()
        u = self.gn2(_batched_lin_add(a, w2, x_plus_b2), affine=n2)
        return self.gn3(u.add_(z).relu_(), out=out, affine=n3)


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
