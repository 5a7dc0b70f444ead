"""Output shared by the benchmark scripts: the result as indented JSON on stdout, and optionally in a file."""

from __future__ import annotations

import json

from deqfusion.training.checkpoint import atomic_write_json


def report(result: dict, out: str | None) -> None:
    """Print ``result`` as JSON; with ``out``, also write it there (atomically)."""
    print(json.dumps(result, indent=2))
    if out:
        atomic_write_json(out, result)
