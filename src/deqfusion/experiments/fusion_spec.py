"""Fusion specs on the command line: ``NAME`` or ``NAME:key=value,key=value``, parsed and checked in one place.

``deq:f_tol=1e-4,b_mode=phantom`` names the fusion ``deq`` with two options. ``NAME`` is either an
experiment's preset (a registered fusion with preset options, e.g. the omics ``deq`` injects a plain sum) or
any registered fusion, or one of the experiment's own non-fusion names (``early`` on MM-IMDB). Every option is
checked against the fusion class's signature (:func:`deqfusion.fusion.registry.fusion_class`): an unknown key
or a value of the wrong kind is a clear error before any data is read.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .. import fusion as _fusions  # noqa: F401  (registers the fusions)
from ..errors import UserError
from ..fusion.registry import available_fusions, fusion_parameters

__all__ = ["FusionSpec", "parse_option_value", "parse_fusion_spec", "fusion_parameters", "check_options",
           "resolve_fusion_spec", "resolve_fusion_specs"]

#: constructor arguments every fusion takes from the model, never from a spec


@dataclass(frozen=True)
class FusionSpec:
    """A parsed spec: ``label`` (the run folder's name), ``name`` as written, the ``options`` as written."""

    label: str
    name: str
    options: dict


def parse_option_value(text: str):
    """``"true"`` -> True, ``"none"`` -> None, Python literals (numbers, tuples, ...) as such, anything else as
    text."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_fusion_spec(spec: str) -> FusionSpec:
    """Syntax only: ``"deq:f_max_iter=50,b_mode=implicit"`` -> ``FusionSpec(label, "deq", {...})``."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise UserError(f"--fusion {spec!r}: missing fusion name")
    options: dict = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise UserError(f"--fusion {spec!r}: options are key=value pairs separated by commas, got {item!r}")
        options[key.strip()] = parse_option_value(value.strip())
    label = name + "".join(f"_{k}-{v}" for k, v in options.items())
    return FusionSpec(re.sub(r"[^A-Za-z0-9_.-]+", "", label), name, options)


def _kind_ok(value, default) -> bool:
    if default is None or default is inspect.Parameter.empty or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def check_options(name: str, options: Mapping, where: str) -> None:
    """Raise :class:`UserError` for an option the fusion ``name`` does not take or a value of the wrong kind."""
    params = fusion_parameters(name)
    for key, value in options.items():
        if key not in params:
            raise UserError(f"{where}: fusion {name!r} has no option {key!r}; its options: {', '.join(params)}")
        default = params[key].default
        if not _kind_ok(value, default):
            raise UserError(f"{where}: option {key}={value!r} should be a {type(default).__name__} like its "
                            f"default {default!r}")


def resolve_fusion_spec(spec: str, presets: Mapping[str, tuple[str, dict]] | None = None,
                        others: Sequence[str] = ()) -> dict:
    """A spec resolved for an experiment: ``{"label", "name", "fusion", "options"}``.

    ``presets``: name -> (registered fusion, preset options), overridden by the spec's options. ``others``: the
    experiment's non-fusion names (they take no options; ``fusion`` is then the name itself).
    """
    parsed = parse_fusion_spec(spec)
    where = f"--fusion {spec!r}"
    if parsed.name in others:
        if parsed.options:
            raise UserError(f"{where}: {parsed.name} takes no options")
        return {"label": parsed.label, "name": parsed.name, "fusion": parsed.name, "options": {}}
    presets = presets or {}
    base, preset = presets.get(parsed.name, (parsed.name, {}))
    if base not in available_fusions():
        known = sorted(set(presets) | set(available_fusions()) | set(others))
        raise UserError(f"{where}: unknown fusion {parsed.name!r}; choose one of {known}")
    options = {**preset, **parsed.options}
    check_options(base, options, where)
    return {"label": parsed.label, "name": parsed.name, "fusion": base, "options": options}


def resolve_fusion_specs(specs: Sequence[str], presets: Mapping[str, tuple[str, dict]] | None = None,
                         others: Sequence[str] = ()) -> list[dict]:
    """:func:`resolve_fusion_spec` for each spec; two specs with one label are an error."""
    out = [resolve_fusion_spec(s, presets, others) for s in specs]
    labels = [f["label"] for f in out]
    if len(set(labels)) != len(labels):
        raise UserError(f"--fusion names the same setting twice: {labels}")
    return out
