"""Writing results: resolved config, per-seed JSON, a CSV table, and mean +- std summaries."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..errors import UserError
from .checkpoint import atomic_write_bytes, atomic_write_json


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    vals = [float(v) for v in values]
    if not vals:
        return math.nan, math.nan
    m = sum(vals) / len(vals)
    if len(vals) == 1:
        return m, 0.0
    var = sum((v - m) ** 2 for v in vals) / (len(vals) - 1)
    return m, math.sqrt(var)


def summarize(per_seed: Sequence[Mapping[str, float]], keys: Iterable[str] | None = None) -> dict:
    """``{metric: {"mean": m, "std": s, "values": [...]}}`` over seeds, for every numeric metric."""
    if not per_seed:
        return {}
    keys = list(keys) if keys is not None else [
        k for k, v in per_seed[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    out = {}
    for k in keys:
        vals = [float(r[k]) for r in per_seed if k in r]
        m, s = mean_std(vals)
        out[k] = {"mean": m, "std": s, "values": vals}
    return out


def format_mean_std(summary: Mapping[str, Mapping[str, float]], keys: Sequence[str], scale: float = 1.0,
                    digits: int = 2) -> list[str]:
    return [f"{summary[k]['mean'] * scale:.{digits}f} +- {summary[k]['std'] * scale:.{digits}f}" for k in keys]


def write_csv(path: str | Path, rows: Sequence[Mapping[str, object]]) -> None:
    """Write rows (dicts) as CSV with the union of their keys as header, atomically."""
    header: list[str] = []
    for r in rows:
        for k in r:
            if k not in header:
                header.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header)
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in header})
    atomic_write_bytes(path, buf.getvalue().encode())


def write_json(path: str | Path, obj) -> None:
    atomic_write_json(path, obj)


def finished_result(result_path: str | Path, fingerprint: Mapping) -> dict | None:
    """The ``result.json`` of a finished run, for ``--resume``: ``None`` if there is none yet, the stored result
    if it was written with ``fingerprint``, and a :class:`~deqfusion.errors.UserError` if with other settings."""
    result_path = Path(result_path)
    if not result_path.is_file():
        return None
    done = json.loads(result_path.read_text())
    if done.get("fingerprint") != fingerprint:
        raise UserError(f"{result_path} was written with other settings; use another --out")
    return done


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
