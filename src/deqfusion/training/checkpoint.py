"""Atomic, safe checkpoints: state dicts only, written to a temporary file and renamed into place."""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError

log = logging.getLogger(__name__)


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, corrupt, or holds something other than tensors and plain data.

    A :class:`~deqfusion.errors.UserError`, so that every command reports it as one line (exit status 2)."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Save ``state`` (nested dicts/lists of tensors, numbers and strings) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    log.debug("checkpoint written to %s", path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Uses ``weights_only=True``: a file holding pickled objects (which could run code) is refused with a
    :class:`CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError or RuntimeError with a long message
        raise CheckpointError(
            f"refusing to load {path}: it is not a plain state-dict checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a dict checkpoint")
    return state


def require_entries(state: dict, path: str | Path, keys: list[str] | tuple[str, ...]) -> None:
    """Raise :class:`CheckpointError` unless ``state`` (loaded from ``path``) has every entry in ``keys``."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a checkpoint of this trainer: it has no {', '.join(map(repr, missing))} "
                              f"entr{'y' if len(missing) == 1 else 'ies'}; remove it or use another output folder")


def _describe_mismatch(expected: dict, got: dict) -> list[str]:
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [k for k in expected if k in got and isinstance(got[k], torch.Tensor)
              and isinstance(expected[k], torch.Tensor) and got[k].shape != expected[k].shape]
    not_tensors = [k for k in expected if k in got and not isinstance(got[k], torch.Tensor)]
    out = []
    if missing:
        out.append(f"missing {_few(missing)}")
    if unexpected:
        out.append(f"unexpected {_few(unexpected)}")
    for k in shapes[:3]:
        out.append(f"{k!r} has shape {tuple(got[k].shape)}, the model's {tuple(expected[k].shape)}")
    if len(shapes) > 3:
        out.append(f"{len(shapes) - 3} more shape mismatches")
    if not_tensors:
        out.append(f"{_few(not_tensors)} not tensors")
    return out


def _few(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(repr(k) for k in keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


def load_state_into(target: Any, state: Any, path: str | Path, what: str = "model") -> None:
    """``target.load_state_dict(state)`` with a one-line :class:`CheckpointError` naming ``path`` instead of torch's
    multi-line error when the state does not fit.

    For an ``nn.Module`` the keys and tensor shapes are compared first (missing, unexpected, wrong shape); for an
    optimiser, a scheduler or anything else with ``load_state_dict``, whatever it raises on a state that does not fit
    (``ValueError``, ``KeyError``, ``RuntimeError``, ``TypeError``, ``IndexError``) is turned into the same error.
    """
    fix = "it was written for another model or settings; remove it or use another output folder"
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: its {what} entry is a {type(state).__name__}, not a state dict; {fix}")
    if isinstance(target, torch.nn.Module):
        problems = _describe_mismatch(target.state_dict(), state)
        if problems:
            raise CheckpointError(f"{path}: its {what} state does not fit ({'; '.join(problems)}); {fix}")
    try:
        target.load_state_dict(state)
    except (ValueError, KeyError, RuntimeError, TypeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: its {what} state does not fit ({first}); {fix}") from exc


def check_output_path(path: str | Path, option: str = "--out", kind: str = "folder") -> Path:
    """Check, without creating anything, that ``path`` can be used as an output ``kind`` (``"folder"`` or
    ``"file"``): not an existing file where a folder is wanted (or a folder where a file is), and its nearest
    existing ancestor a writable folder. Raises :class:`~deqfusion.errors.UserError` naming ``option``."""
    if kind not in ("folder", "file"):
        raise ValueError(f"kind must be 'folder' or 'file', got {kind!r}")
    p = Path(path).expanduser()
    if kind == "folder" and p.exists() and not p.is_dir():
        raise UserError(f"{option} {p} exists and is not a folder; pass a folder path")
    if kind == "file" and p.is_dir():
        raise UserError(f"{option} {p} is a folder; pass a file path")
    probe = p if kind == "folder" else p.parent
    anc = probe.absolute()
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise UserError(f"{option} {p} cannot be created: {anc} is a file, not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        what = "written to" if anc == probe.absolute() else f"created (no write permission in {anc})"
        raise UserError(f"{option} {p} cannot be {what}; pass a path you can write to")
    return p


#: the packages whose code decides a model's arithmetic (the solver, the fusions, the models)
MODEL_PACKAGES = ("deq", "fusion", "models")


@functools.cache
def model_code_version(packages: tuple[str, ...] = MODEL_PACKAGES) -> str:
    """A short hash of the code of ``deqfusion.<package>`` for each of ``packages`` (:func:`code_hash` of their
    modules). Part of a run's fingerprint: a run is resumed only by the code that started it."""
    root = Path(__file__).resolve().parent.parent
    return code_hash([p for package in packages for p in sorted((root / package).rglob("*.py"))], root)


def code_hash(paths: list[Path], root: Path) -> str:
    """A short hash of the syntax trees of the Python files ``paths`` (named relative to ``root``) with their
    docstrings removed: a changed computation changes it, an edited comment, docstring or layout does not."""
    digest = hashlib.sha256()
    for path in paths:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                    and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        digest.update(Path(path).relative_to(root).as_posix().encode())
        digest.update(ast.dump(tree).encode())
    return digest.hexdigest()[:12]
