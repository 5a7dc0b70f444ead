"""What every fusion module shares: input checking and the (fused, info) calling convention.

A fusion module is called as ``fusion(inputs, mask=None)`` where ``inputs`` is a list (or tuple) of tensors,
one per modality, or a dict keyed by modality name; entries may be ``None`` for a modality that is absent for
the whole batch. ``mask`` is an optional ``(B, N)`` boolean tensor, True where modality ``i`` is present for
sample ``b``. It returns ``(fused, info)`` with ``info`` a :class:`deqfusion.fusion.info.FusionInfo`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..deq.result import zero_loss
from .info import FusionInfo

__all__ = ["FusionModule", "FusionInfo", "check_inputs"]


def check_inputs(
    inputs: Sequence[Tensor | None] | Mapping[str, Tensor | None],
    names: Sequence[str] | None,
    in_dims: Sequence[int] | None,
    mask: Tensor | None = None,
    feature_dims: int | None = None,
) -> tuple[list[Tensor | None], Tensor | None]:
    """Normalise and validate fusion inputs.

    Returns the inputs as a list in modality order and the presence mask (None when every modality is
    present for every sample). Raises ``ValueError``/``TypeError`` naming the modality and the problem.

    Args:
        inputs: list/tuple of tensors or dict name -> tensor; ``None`` marks a modality absent for the batch.
        names: modality names in order (used to order dict inputs and in error messages).
        in_dims: expected size of dimension 1 of each input, or None to skip the check.
        mask: optional ``(B, N)`` presence mask.
        feature_dims: required number of dimensions per sample (1 for ``(B, d)``, 2 for ``(B, C, L)``),
            or None to accept either.
    """
    n_expected = len(names) if names is not None else (len(in_dims) if in_dims is not None else None)
    if isinstance(inputs, Mapping):
        if names is None:
            raise TypeError("this fusion module was built without modality names; pass a list, not a dict")
        unknown = sorted(set(inputs) - set(names))
        if unknown:
            raise ValueError(f"unknown modality name(s) {unknown}; this module fuses {list(names)}")
        missing = [n for n in names if n not in inputs]
        if missing:
            raise ValueError(
                f"modality {missing[0]!r} is missing from the input dict; pass None for an absent modality"
            )
        xs = [inputs[n] for n in names]
    elif isinstance(inputs, (list, tuple)):
        xs = list(inputs)
    else:
        raise TypeError(f"fusion inputs must be a list/tuple or dict of tensors, got {type(inputs).__name__}")

    if len(xs) < 2 and (n_expected is None or n_expected < 2):
        raise ValueError(f"fusion needs at least 2 modalities, got {len(xs)}")
    if n_expected is not None and len(xs) != n_expected:
        raise ValueError(f"expected {n_expected} modalities, got {len(xs)}")

    label = (lambda i: f"modality {i} ({names[i]!r})") if names is not None else (lambda i: f"modality {i}")
    present = [(i, x) for i, x in enumerate(xs) if x is not None]
    if not present:
        raise ValueError("every modality is None: nothing to fuse")
    batch = None
    ref = None
    for i, x in present:
        if not isinstance(x, Tensor):
            raise TypeError(f"{label(i)} must be a tensor or None, got {type(x).__name__}")
        if x.dim() < 2:
            raise ValueError(f"{label(i)} must have a batch dimension and features, got shape {tuple(x.shape)}")
        if feature_dims is not None and x.dim() != feature_dims + 1:
            want = "(B, d)" if feature_dims == 1 else "(B, C, L)"
            raise ValueError(f"{label(i)} has shape {tuple(x.shape)}; this module expects {want}")
        if in_dims is not None and x.shape[1] != in_dims[i]:
            raise ValueError(
                f"{label(i)} has shape {tuple(x.shape)}: dimension 1 should be {in_dims[i]}, got {x.shape[1]}"
            )
        if not x.is_floating_point():
            raise TypeError(f"{label(i)} must be a floating-point tensor, got {x.dtype}")
        if batch is None:
            batch, ref = x.shape[0], i
        elif x.shape[0] != batch:
            raise ValueError(
                f"batch sizes differ: {label(ref)} has {batch} samples, {label(i)} has {x.shape[0]}"
            )
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
            raise ValueError(f"{label(i)} contains NaN or inf values (in {bad} of {x.shape[0]} samples)")
    first = present[0][1]
    for i, x in present[1:]:
        if x.device != first.device or x.dtype != first.dtype:
            raise ValueError(
                f"{label(i)} is {x.dtype} on {x.device} but {label(present[0][0])} is "
                f"{first.dtype} on {first.device}"
            )

    absent = [i for i, x in enumerate(xs) if x is None]
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.shape != (batch, len(xs)):
            shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"mask must be a (batch, modalities) = ({batch}, {len(xs)}) tensor, got {shape}")
        if mask.dtype != torch.bool:
            if mask.is_floating_point() or mask.is_complex():
                raise TypeError(f"mask must be a bool (or 0/1 integer) presence mask, got {mask.dtype}; a float mask "
                                f"is not cast (0.5 would become 'present'): pass mask > 0 or mask.bool() as you mean")
            if not bool(((mask == 0) | (mask == 1)).all()):
                raise ValueError("an integer mask must hold only 0 (absent) and 1 (present)")
        mask = mask.to(device=first.device, dtype=torch.bool)
    if absent:
        if mask is None:
            mask = torch.ones(batch, len(xs), dtype=torch.bool, device=first.device)
        mask = mask.clone()
        mask[:, absent] = False
    if mask is not None:
        empty = ~mask.any(1)
        if empty.any():
            raise ValueError(f"{int(empty.sum())} sample(s) have no modality present in the mask")
    return xs, mask


class FusionModule(nn.Module):
    """Base class: holds modality names/dims and implements the shared input handling.

    Subclasses implement ``fuse(xs, mask) -> (fused, info)`` on validated inputs.
    """

    #: number of per-sample feature dimensions accepted (1: (B, d); 2: (B, C, L); None: either)
    feature_dims: int | None = 1

    def __init__(self, in_dims: Sequence[int], names: Sequence[str] | None = None):
        super().__init__()
        in_dims = [int(d) for d in in_dims]
        if len(in_dims) < 2:
            raise ValueError(f"fusion needs at least 2 modalities, got in_dims={in_dims}")
        if any(d <= 0 for d in in_dims):
            raise ValueError(f"modality dimensions must be positive, got {in_dims}")
        if names is not None:
            names = [str(n) for n in names]
            if len(names) != len(in_dims):
                raise ValueError(f"{len(names)} names for {len(in_dims)} modalities")
            if len(set(names)) != len(names):
                raise ValueError(f"modality names must be unique, got {names}")
        self.in_dims = in_dims
        self.names = names

    @property
    def num_modalities(self) -> int:
        return len(self.in_dims)

    def forward(self, inputs, mask: Tensor | None = None) -> tuple[Tensor, FusionInfo]:
        """Fuse one batch.

        Args:
            inputs: one tensor per modality, as a list in the order of ``in_dims`` or a dict keyed by the
                module's ``names``: ``(B, d_i)`` vectors or, for fusions that take them, ``(B, C_i, L)``
                sequences. All finite, floating point, on one device and with one batch size; an entry may be
                ``None`` for a modality absent from the whole batch.
            mask: optional ``(B, N)`` boolean tensor, True where modality ``i`` is present for sample ``b``;
                every sample needs at least one present modality.

        Returns:
            ``(fused, info)``: the fused tensor, ``(B, out_dim)`` (or ``(B, out_dim, L)`` for sequences), and a
            :class:`~deqfusion.deq.result.FusionInfo` (the Jacobian loss to add to the training loss, and for
            DEQ fusions the solver statistics).

        Raises:
            TypeError: inputs that are not tensors, not floating point, or a dict given to a module without names.
            ValueError: wrong number of modalities, unknown names, shapes that do not match ``in_dims``, NaN or
                inf in an input, a mask of the wrong shape, or a sample with no modality present.
        """
        xs, mask = check_inputs(inputs, self.names, self.in_dims, mask, self.feature_dims)
        return self.fuse(xs, mask)

    def fuse(self, xs: list[Tensor | None], mask: Tensor | None) -> tuple[Tensor, FusionInfo]:
        raise NotImplementedError

    @staticmethod
    def no_info(like: Tensor) -> FusionInfo:
        return FusionInfo(jac_loss=zero_loss(like))
