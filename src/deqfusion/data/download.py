"""Fetching data files into a cache folder, with SHA-256 checks. Knows nothing about any dataset.

A *source* is either a URL (``https://...``, ``http://...``, ``file://...``) or a local folder/file path, so
that the same code copies files from a local mirror when the machine has no network. Every file is written to
a temporary name and renamed into place only after its hash matched, so a cache never holds a half-written or
unverified file under its real name.

Checksum lists use the ``sha256sum`` format (``<hex>  <name>`` per line, ``#`` comments allowed); names may
carry a folder prefix (``rosmap/1_tr.csv``), which is ignored when matching by file name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "default_cache_dir",
    "sha256_file",
    "parse_checksums",
    "read_checksums",
    "verify_file",
    "verify_folder",
    "fetch_file",
    "fetch_files",
]

_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$DEQFUSION_CACHE_DIR``, else ``$XDG_CACHE_HOME/deqfusion``, else ``~/.cache/deqfusion``."""
    env = os.environ.get("DEQFUSION_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "deqfusion"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_checksums(text: str, origin: str = "<checksums>") -> dict[str, str]:
    """Parse ``sha256sum`` output into ``{file name: hex digest}`` (folder prefixes dropped)."""
    out: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise DataError(f"{origin}, line {lineno}: expected '<sha256>  <file>', got {raw!r}")
        digest, name = parts[0].lower(), parts[1].strip().lstrip("*")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise DataError(f"{origin}, line {lineno}: {parts[0]!r} is not a SHA-256 hex digest")
        key = name.replace("\\", "/").rsplit("/", 1)[-1]
        if key in out and out[key] != digest:
            raise DataError(f"{origin}: two different hashes for {key!r}")
        out[key] = digest
    return out


def read_checksums(path: str | Path) -> dict[str, str]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DataError(f"cannot read checksum list {path}: {exc.strerror or exc}") from exc
    return parse_checksums(text, str(path))


def verify_file(path: str | Path, expected: str) -> None:
    """Raise :class:`DataError` unless ``path`` exists and its SHA-256 equals ``expected``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    got = sha256_file(path)
    if got != expected.lower():
        raise DataError(f"{path}: SHA-256 mismatch (expected {expected.lower()}, got {got}); the file is "
                        "corrupt or a different version")


def verify_folder(folder: str | Path, checksums: Mapping[str, str],
                  names: Iterable[str] | None = None) -> None:
    """Check every file named in ``checksums`` (or only ``names``) inside ``folder``."""
    folder = Path(folder)
    for name in (names if names is not None else checksums):
        if name not in checksums:
            raise DataError(f"no recorded SHA-256 for {name!r}")
        verify_file(folder / name, checksums[name])


def _is_url(source: str) -> bool:
    return urllib.parse.urlsplit(source).scheme in ("http", "https", "file")


def _join(source: str, name: str) -> str:
    if _is_url(source):
        return source.rstrip("/") + "/" + urllib.parse.quote(name)
    return str(Path(source) / name)


def _copy_to(src: str, fh, timeout: float) -> None:
    if _is_url(src):
        try:
            with urllib.request.urlopen(src, timeout=timeout) as resp:  # noqa: S310 (scheme checked above)
                shutil.copyfileobj(resp, fh, _CHUNK)
        except urllib.error.HTTPError as exc:
            raise DataError(f"download of {src} failed: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DataError(f"download of {src} failed: {reason}") from exc
    else:
        try:
            with open(src, "rb") as inp:
                shutil.copyfileobj(inp, fh, _CHUNK)
        except OSError as exc:
            raise DataError(f"cannot copy {src}: {exc.strerror or exc}") from exc


def fetch_file(source: str | Path, dest: str | Path, sha256: str | None = None,
               timeout: float = 60.0) -> Path:
    """Copy or download one file to ``dest``, verifying its SHA-256 when given.

    Args:
        source: URL or local path of the file.
        dest: where the file goes; its folder is created. An existing ``dest`` whose hash matches is kept
            (no transfer); one whose hash differs is replaced.
        sha256: expected hex digest, or None to skip the check (the caller should then check the content).
    """
    dest = Path(dest)
    if dest.is_file() and sha256 is not None and sha256_file(dest) == sha256.lower():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            _copy_to(str(source), fh, timeout)
        if sha256 is not None:
            got = sha256_file(tmp)
            if got != sha256.lower():
                raise DataError(f"{source}: SHA-256 mismatch (expected {sha256.lower()}, got {got}); "
                                "refusing to use it")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("fetched %s -> %s", source, dest)
    return dest


def fetch_files(source: str | Path, names: Iterable[str], dest_dir: str | Path,
                checksums: Mapping[str, str] | None = None, require_checksums: bool = False,
                progress=None) -> Path:
    """Fetch ``source/<name>`` for every name into ``dest_dir``.

    Args:
        source: base URL or local folder.
        checksums: ``{name: sha256}``; files listed there are verified.
        require_checksums: refuse a name that has no recorded hash.
        progress: optional callable ``progress(name)`` called before each file (e.g. a tqdm update).
    Returns ``dest_dir``.
    """
    dest_dir = Path(dest_dir)
    checksums = dict(checksums or {})
    for name in names:
        digest = checksums.get(name)
        if digest is None and require_checksums:
            raise DataError(f"no recorded SHA-256 for {name!r}; refusing to fetch it unchecked")
        if progress is not None:
            progress(name)
        fetch_file(_join(str(source), name), dest_dir / name, digest)
    return dest_dir
