"""Name -> fusion class registry, so that models take ``--fusion NAME`` and build any fusion the same way."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

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


_STRUCTURAL = ("self", "in_dims", "out_dim", "names")


def fusion_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The options the fusion registered as ``name`` accepts: its constructor's keyword parameters and, where it
    passes ``**kwargs`` on, those of its base classes."""
    params: dict[str, inspect.Parameter] = {}
    for cls in fusion_class(name).__mro__:
        if "__init__" not in vars(cls):
            continue
        sig = inspect.signature(vars(cls)["__init__"])
        for p in sig.parameters.values():
            if p.name not in _STRUCTURAL and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                params.setdefault(p.name, p)
        if not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
            break
    return params



class FusionFactory:
    """A registered fusion with its options, built later at the widths a model needs.

    A model that contains a fusion takes one of these (or a built module, or a plain name) and calls it where it
    creates its layers, so the fusion's parameters are drawn at the same point of the random stream as if the
    model had built it itself. Option names are checked against the fusion's signature when the factory is made.

    Example:
        ```python
        factory = FusionFactory("deq", b_mode="phantom")
        fusion = factory([1000, 1000, 503], 500)          # the same as build_fusion("deq", [...], 500, b_mode=...)
        ```
    """

    def __init__(self, name: str, **options):
        unknown = sorted(set(options) - set(fusion_parameters(name)))
        if unknown:
            raise ValueError(f"fusion {name!r} has no option(s) {unknown}")
        self.name = name
        self.options = dict(options)

    def __call__(self, in_dims, out_dim: int, names=None):
        return build_fusion(self.name, in_dims, out_dim, names=names, **self.options)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"FusionFactory({self.name!r}{', ' + opts if opts else ''})"


def make_fusion(fusion, in_dims, out_dim: int, names=None):
    """A model's fusion module from what its caller gave.

    Args:
        fusion: a built module (its ``in_dims`` and ``out_dim`` must be the model's), a :class:`FusionFactory` or
            any callable ``(in_dims, out_dim, names=None) -> module``, or a registered name (built with its
            defaults).
        in_dims, out_dim, names: what the model feeds the fusion and expects from it.

    Raises:
        ValueError: a built module of other widths, or an unknown name.
        TypeError: anything else.
    """
    if isinstance(fusion, nn.Module):
        got = (list(getattr(fusion, "in_dims", in_dims)), int(getattr(fusion, "out_dim", out_dim)))
        if got != (list(in_dims), int(out_dim)):
            raise ValueError(f"the fusion module takes in_dims {got[0]} to out_dim {got[1]}; this model needs "
                             f"in_dims {list(in_dims)} to out_dim {out_dim}")
        return fusion
    if isinstance(fusion, str):
        fusion = FusionFactory(fusion)
    if callable(fusion):
        return fusion(in_dims, out_dim, names=names)
    raise TypeError(f"a fusion is a module, a FusionFactory or a registered name, got {type(fusion).__name__}")


def fusion_label(fusion) -> str:
    """The registered name of a fusion given to a model (a name, a factory or a built module), for records."""
    if isinstance(fusion, str):
        return fusion
    if isinstance(fusion, FusionFactory):
        return fusion.name
    cls = type(fusion)
    return next((n for n, c in _REGISTRY.items() if c is cls), cls.__name__)
