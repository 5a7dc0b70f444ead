"""Griffe extension for the API reference.

- The docstrings' reStructuredText roles (``:func:`x```, ``:class:`~a.b.C```) are shown as inline code (``x``,
  ``C``), which Markdown would otherwise print literally.
- A signature default written as a name of ``deqfusion.deq.defaults`` (``f_max_iter: int = D.F_MAX_ITER``) is
  shown with its value (``30``), read from that module's source without importing the package.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import griffe

ROLE = re.compile(r":(?:py:)?(?:mod|func|class|meth|attr|data|exc|obj):`(?P<tilde>~?)(?P<target>[^`]+)`")


def _code(m: re.Match) -> str:
    target = m["target"]
    return f"`{target.rsplit('.', 1)[-1] if m['tilde'] else target}`"


DEFAULTS_FILE = Path(__file__).resolve().parents[1] / "src" / "deqfusion" / "deq" / "defaults.py"
DEFAULT_NAME = re.compile(r"^(?:D|defaults)\.(?P<name>[A-Z][A-Z0-9_]*)$")


def _library_defaults() -> dict:
    spec = importlib.util.spec_from_file_location("_deqfusion_defaults_for_docs", DEFAULTS_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {k: v for k, v in vars(module).items() if k.isupper()}


class SphinxRoles(griffe.Extension):
    def __init__(self) -> None:
        super().__init__()
        self.defaults = _library_defaults() if DEFAULTS_FILE.is_file() else {}

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)
        for param in getattr(obj, "parameters", None) or []:
            m = DEFAULT_NAME.match(str(param.default)) if param.default is not None else None
            if m and m["name"] in self.defaults:
                param.default = repr(self.defaults[m["name"]])
