"""Model selection on validation scores: which direction is better, and whether a new score improves on the best."""

from __future__ import annotations

import math

__all__ = ["selection_direction", "selection_mode", "improves"]


def selection_direction(key: str) -> int:
    """+1 when higher is better, -1 when lower is better (losses and cross-entropies)."""
    low = key.lower()
    return -1 if (low in ("ce", "nll") or "loss" in low or low.startswith("ce_")) else 1


def selection_mode(key: str, mode: str | None = None) -> str:
    """``mode`` if given, else ``"min"`` or ``"max"`` from the name (:func:`selection_direction`)."""
    if mode is not None:
        return mode
    return "min" if selection_direction(key) < 0 else "max"


def improves(score: float, tie: float | None, best: float | None, best_tie: float | None, mode: str,
             tie_key: str | None = None, min_delta: float = 0.0) -> bool:
    """Whether ``score`` (with tie-break score ``tie``) is better than the best so far (None: none yet).

    A non-finite score never improves. ``score`` must beat ``best`` by more than ``min_delta`` in the direction of
    ``mode``; an exact tie is broken by ``tie`` against ``best_tie`` (direction from ``tie_key``'s name)."""
    if not math.isfinite(score):
        return False
    if best is None:
        return True
    sign = 1 if mode == "max" else -1
    s, b = sign * score, sign * best
    if s > b + min_delta:
        return True
    if s == b and tie_key is not None and tie is not None and best_tie is not None:
        return selection_direction(tie_key) * tie > selection_direction(tie_key) * best_tie
    return False
