"""Name -> fusion class registry, so that models take ``--fusion NAME`` and build any fusion the same way."""

from __future__ import annotations

from collections.abc import Callable

_REGISTRY: dict[str, Callable] = {}


def register_fusion(name: str):
    """Class decorator registering a fusion under ``name``.

    Every registered class is built as ``cls(in_dims=[...], out_dim=D, names=None, **options)``.
    """

    def wrap(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"fusion {name!r} registered twice")
        _REGISTRY[name] = cls
        return cls

    return wrap


def available_fusions() -> list[str]:
    """The registered fusion names, sorted (``"concat"``, ``"deq"``, ``"unrolled"``, ...)."""
    return sorted(_REGISTRY)


def fusion_class(name: str) -> Callable:
    """The class registered as ``name``; raises ``ValueError`` listing the known names."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown fusion {name!r}; choose one of {available_fusions()}")
    return _REGISTRY[name]


def build_fusion(name: str, in_dims, out_dim: int, names=None, **options):
    """Build the fusion registered as ``name``.

    Every fusion has the calling convention of :class:`~deqfusion.fusion.base.FusionModule`:
    ``fused, info = fusion(xs, mask=None)`` with ``xs`` a list (or dict, when built with ``names``) of ``(B, d_i)``
    or ``(B, C_i, L)`` tensors, and ``fused`` of shape ``(B, out_dim)`` or ``(B, out_dim, L)``.

    Args:
        name: a registered name (:func:`available_fusions`).
        in_dims: feature size of each modality.
        out_dim: width of the fused output.
        names: optional modality names, so that inputs may be given as a dict.
        **options: the fusion's own keyword arguments (for ``"deq"`` those of
            :class:`~deqfusion.fusion.deq_fusion.DEQFusion`, e.g. ``f_max_iter=50``).

    Returns:
        The fusion module (an ``nn.Module``).

    Raises:
        ValueError: unknown ``name`` (the message lists the known ones), or an option the fusion rejects.

    Example:
        ```python
        fusion = build_fusion("deq", [1000, 1000, 503], 500, b_mode="phantom")
        fused, info = fusion([x1, x2, x3])
        ```
    """
    return fusion_class(name)(in_dims=in_dims, out_dim=out_dim, names=names, **options)
