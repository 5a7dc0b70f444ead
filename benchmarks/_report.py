"""Pieces shared by the benchmark scripts: their common options, best-of-N timing, and the JSON output."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import torch

from deqfusion.benchmarking.step import time_call
from deqfusion.training.checkpoint import atomic_write_json


def add_common_args(p: argparse.ArgumentParser, repeats: int) -> None:
    """``--repeats`` (default ``repeats``), ``--threads`` (default 2) and ``--out``."""
    p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="also write the JSON here")


def fastest(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of ``repeats`` timed CPU calls of ``fn`` (after one warm-up call), in seconds."""
    return min(time_call(fn, torch.device("cpu"), repeats))


def report(result: dict, out: str | None) -> None:
    """Print ``result`` as JSON; with ``out``, also write it there (atomically)."""
    print(json.dumps(result, indent=2))
    if out:
        atomic_write_json(out, result)
