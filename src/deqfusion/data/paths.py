"""Where a dataset's files are read from: one rule for every loader.

A dataset lives in a folder called ``name`` (some accept other spellings, e.g. ``ROSMAP``) and needs a list
of files in it. The folder is looked for, in this order:

1. ``data_dir`` given by the caller (``--data-dir``): the dataset folder itself, or a root holding ``name/``;
2. ``$DEQFUSION_DATA_DIR/name``;
3. ``<cache>/<cache_subdir>/name`` (the download cache, see :func:`deqfusion.data.download.default_cache_dir`);
4. a download into that cache folder, for datasets that can be downloaded and when the caller allows it.

A folder found at steps 1-2 must hold every required file: a local folder that is incomplete is an error naming
the missing files, never a reason to look further (a silent fall-through to the cache or the network would load
other data than the user pointed at). ``data_dir`` or ``$DEQFUSION_DATA_DIR`` naming something that is not a
folder is an error too. Only the cache may be incomplete (an interrupted download), and a download completes it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import DataError
from . import download

log = logging.getLogger(__name__)

__all__ = ["ENV_VAR", "resolve_dataset_folder", "missing_files"]

#: environment variable naming the data root
ENV_VAR = "DEQFUSION_DATA_DIR"


def missing_files(folder: Path, required: Sequence[str]) -> list[str]:
    """The names in ``required`` that are not files inside ``folder``."""
    return [f for f in required if not (folder / f).is_file()]


def _incomplete(folder: Path, missing: list[str], what: str, how: str) -> DataError:
    shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
    return DataError(f"{folder} ({how}) is an incomplete {what} folder: missing {shown}; complete it or point "
                     "--data-dir at a complete copy")


def _holds_any(folder: Path, required: Sequence[str]) -> bool:
    return any((folder / f).is_file() for f in required)


def resolve_dataset_folder(
    name: str,
    required: Sequence[str],
    data_dir: str | Path | None = None,
    *,
    what: str | None = None,
    aliases: Sequence[str] = (),
    cache_dir: str | Path | None = None,
    cache_subdir: str | None = None,
    fetch: Callable[[Path], None] | None = None,
    download_missing: bool = True,
) -> Path:
    """The folder dataset ``name`` is read from, by the rule of the module docstring.

    Args:
        name: the dataset's folder name under a data root.
        required: the file names (relative paths) the folder must hold.
        data_dir: the caller's explicit folder (``--data-dir``): the dataset folder or a root holding it.
        what: the dataset's name in messages (default ``name``).
        aliases: other spellings of the folder name under a root.
        cache_dir: the download cache (default :func:`download.default_cache_dir`).
        cache_subdir: folder inside the cache holding ``name/`` (None: ``name`` directly in the cache).
        fetch: ``fetch(dest)`` downloads the files into ``dest``; None when the dataset cannot be downloaded.
        download_missing: False never calls ``fetch``.
    Raises:
        DataError naming the folder and the missing files, or every place looked in.
    """
    what = what or name
    names = [name, *[a for a in aliases if a != name]]
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            kind = "is not a folder" if root.exists() else "not found"
            raise DataError(f"data folder {kind}: {root} (--data-dir)")
        return _in_root(root, names, required, what, "--data-dir", accept_root=True)
    tried: list[str] = []
    env = os.environ.get(ENV_VAR)
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise DataError(f"{ENV_VAR}={env} is not a folder; set it to the folder holding {name}/ or unset it")
        for n in names:
            if (root / n).is_dir():
                return _in_root(root, [n], required, what, ENV_VAR, accept_root=False)
        tried.append(str(root / name))
        log.debug("%s not under %s=%s; looking in the cache", name, ENV_VAR, env)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else download.default_cache_dir()
    cached = (cache / cache_subdir / name) if cache_subdir else cache / name
    if not missing_files(cached, required):
        return cached
    tried.append(str(cached))
    if fetch is None:
        raise DataError(f"{what} not found (looked in {', '.join(tried)}); pass --data-dir or set {ENV_VAR} to the "
                        f"folder holding {name}/")
    if not download_missing:
        raise DataError(f"{what} not found (looked in {', '.join(tried)}); pass --data-dir, set {ENV_VAR}, or "
                        "allow the download")
    fetch(cached)
    missing = missing_files(cached, required)
    if missing:  # a fetch that did not deliver everything
        raise _incomplete(cached, missing, what, "download cache")
    return cached


def _in_root(root: Path, names: Sequence[str], required: Sequence[str], what: str, how: str,
             accept_root: bool) -> Path:
    """``root`` itself (if accepted and it holds any required file) or ``root/<name>``; must be complete."""
    if accept_root and _holds_any(root, required):
        missing = missing_files(root, required)
        if missing:
            raise _incomplete(root, missing, what, how)
        return root
    for n in names:
        folder = root / n
        if folder.is_dir():
            missing = missing_files(folder, required)
            if missing:
                raise _incomplete(folder, missing, what, how)
            return folder
    raise DataError(f"{root} ({how}) holds neither the {what} files ({', '.join(required[:3])}, ...) nor a "
                    f"{names[0]}/ folder")
