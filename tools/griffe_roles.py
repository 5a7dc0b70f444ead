"""Griffe extension for the API reference: the docstrings' reStructuredText roles (``:func:`x```,
``:class:`~a.b.C```) are shown as inline code (``x``, ``C``), which Markdown would otherwise print literally."""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:mod|func|class|meth|attr|data|exc|obj):`(?P<tilde>~?)(?P<target>[^`]+)`")


def _code(m: re.Match) -> str:
    target = m["target"]
    return f"`{target.rsplit('.', 1)[-1] if m['tilde'] else target}`"


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)
