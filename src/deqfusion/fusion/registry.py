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
    return sorted(_REGISTRY)


def fusion_class(name: str) -> Callable:
    """The class registered as ``name``; raises ``ValueError`` listing the known names."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown fusion {name!r}; choose one of {available_fusions()}")
    return _REGISTRY[name]


def build_fusion(name: str, in_dims, out_dim: int, names=None, **options):
    """Build the fusion registered as ``name``; raises ``ValueError`` listing the known names."""
    return fusion_class(name)(in_dims=in_dims, out_dim=out_dim, names=names, **options)
