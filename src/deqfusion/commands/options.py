"""Parsing of ``NAME:key=value,...`` option values shared by the experiment commands."""

from __future__ import annotations

import ast


def parse_option_value(text: str):
    """``"true"`` -> True, ``"none"`` -> None, Python literals (numbers, tuples, ...) as such, anything else as text."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
