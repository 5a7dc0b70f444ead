"""MM-IMDB in the MultiBench / GMU hdf5 layout (``multimodal_imdb.hdf5``).

The file holds one row per movie in these datasets (others, such as ``images``, ``sequences`` and
``imdb_ids``, may be present and are never read):

============== ============ =============================================
dataset        shape        contents
============== ============ =============================================
``features``   (N, 300)     averaged word2vec embedding of the plot (float)
``vgg_features`` (N, 4096)  VGG-16 features of the poster (float)
``genres``     (N, 23)      multi-hot genre labels (0/1, integer, bool or float)
============== ============ =============================================

Split by row index. The full file (N = 25,959) uses the fixed split of the reference: train ``[0, 15552)``,
validation ``[15552, 18160)``, test ``[18160, 25959)``. A smaller (or larger) file of the same layout, such
as a subset or a generated test file, is split at the same fractions of its length:
``train_end = round(N * 15552 / 25959)``, ``valid_end = round(N * 18160 / 25959)``; an explicit
``(train_end, valid_end)`` overrides both.

Only the three datasets above are read, in contiguous chunks of rows (the poster images are never touched);
keys, shapes, dtypes, label values and finiteness are checked and reported as :class:`DataError` naming the
file, the dataset and the problem.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "FULL_ROWS",
    "FULL_SPLIT",
    "SPLITS",
    "MMIMDBInfo",
    "MMIMDBSplit",
    "inspect_file",
    "split_bounds",
    "load_split",
    "load_splits",
    "write_mmimdb_file",
]

TEXT_KEY, IMAGE_KEY, LABEL_KEY = "features", "vgg_features", "genres"
TEXT_DIM, IMAGE_DIM, NUM_LABELS = 300, 4096, 23
FULL_ROWS = 25959
#: (train_end, valid_end) of the full file
FULL_SPLIT = (15552, 18160)
SPLITS = ("train", "valid", "test")
_SPLIT_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "dev": "valid",
                  "test": "test"}


@dataclass(frozen=True)
class MMIMDBInfo:
    """What :func:`inspect_file` found: sizes and the row ranges of the three splits."""

    path: Path
    n_rows: int
    text_dim: int
    image_dim: int
    num_labels: int
    bounds: dict[str, tuple[int, int]]
    full_split: bool


@dataclass
class MMIMDBSplit:
    """One split in memory as float32 arrays: ``text`` (n, 300), ``image`` (n, 4096), ``labels`` (n, 23)."""

    name: str
    start: int
    stop: int
    text: np.ndarray
    image: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return self.stop - self.start

    def tensors(self, device=None) -> dict:
        """The split as a dict of torch tensors ``text``, ``image``, ``labels`` (float32) on ``device``."""
        import torch

        return {k: torch.from_numpy(getattr(self, k)).to(device) for k in ("text", "image", "labels")}


def _import_h5py():
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("reading MM-IMDB needs h5py: pip install 'deqfusion[data]'") from exc
    return h5py


def split_bounds(n_rows: int, split: Sequence[int] | None = None) -> dict[str, tuple[int, int]]:
    """Row ranges ``{"train": (0, a), "valid": (a, b), "test": (b, n_rows)}``.

    ``split = (a, b)`` gives them explicitly; otherwise the fixed split for a full-size file and the same
    fractions of ``n_rows`` for any other size. Every split must hold at least one row.
    """
    n_rows = int(n_rows)
    if split is not None:
        if len(split) != 2:
            raise DataError(f"a split is given as (train_end, valid_end), got {tuple(split)}")
        a, b = (int(v) for v in split)
    elif n_rows == FULL_ROWS:
        a, b = FULL_SPLIT
    else:
        a = round(n_rows * FULL_SPLIT[0] / FULL_ROWS)
        b = round(n_rows * FULL_SPLIT[1] / FULL_ROWS)
    if not 0 < a < b < n_rows:
        raise DataError(
            f"cannot split {n_rows} rows into non-empty train [0, {a}), validation [{a}, {b}) and "
            f"test [{b}, {n_rows}) parts"
        )
    return {"train": (0, a), "valid": (a, b), "test": (b, n_rows)}


def _check_layout(h5, path: Path, text_dim: int | None, image_dim: int | None, num_labels: int | None):
    missing = [k for k in (TEXT_KEY, IMAGE_KEY, LABEL_KEY) if k not in h5]
    if missing:
        raise DataError(
            f"{path}: not an MM-IMDB (MultiBench) file: missing dataset(s) {missing}; "
            f"found {sorted(h5.keys())}"
        )
    expected = {TEXT_KEY: text_dim, IMAGE_KEY: image_dim, LABEL_KEY: num_labels}
    rows = None
    for key, want in expected.items():
        ds = h5[key]
        if not hasattr(ds, "shape") or not hasattr(ds, "dtype"):
            raise DataError(f"{path}: {key!r} is a group, not a dataset")
        if len(ds.shape) != 2:
            raise DataError(f"{path}: dataset {key!r} should be 2-D (rows, features), got shape {ds.shape}")
        if want is not None and ds.shape[1] != want:
            raise DataError(f"{path}: dataset {key!r} has {ds.shape[1]} columns, expected {want}")
        kind = ds.dtype.kind
        allowed = "biuf" if key == LABEL_KEY else "f"
        if kind not in allowed:
            what = "integer, bool or float" if key == LABEL_KEY else "floating-point"
            raise DataError(f"{path}: dataset {key!r} has dtype {ds.dtype}, expected {what}")
        if rows is None:
            rows = ds.shape[0]
        elif ds.shape[0] != rows:
            raise DataError(
                f"{path}: datasets disagree on the number of rows: {TEXT_KEY!r} has {rows}, "
                f"{key!r} has {ds.shape[0]}"
            )
    if rows == 0:
        raise DataError(f"{path}: the datasets hold no rows")
    return rows


def inspect_file(path: str | Path, split: Sequence[int] | None = None, *, text_dim: int | None = TEXT_DIM,
                 image_dim: int | None = IMAGE_DIM, num_labels: int | None = NUM_LABELS) -> MMIMDBInfo:
    """Open the file, check its layout (keys, 2-D shapes, column counts, dtypes, row counts) and split it.

    Pass ``text_dim=None`` (etc.) to accept any column count. Raises :class:`DataError` on any problem.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"MM-IMDB file not found: {path}")
    h5py = _import_h5py()
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: cannot open as hdf5 ({exc})") from exc
    with h5:
        rows = _check_layout(h5, path, text_dim, image_dim, num_labels)
        info = MMIMDBInfo(
            path=path,
            n_rows=rows,
            text_dim=h5[TEXT_KEY].shape[1],
            image_dim=h5[IMAGE_KEY].shape[1],
            num_labels=h5[LABEL_KEY].shape[1],
            bounds=split_bounds(rows, split),
            full_split=split is None and rows == FULL_ROWS,
        )
    if not info.full_split and split is None:
        log.warning(
            "%s has %d rows, not the %d of the full MM-IMDB file: split proportionally into %s",
            path, rows, FULL_ROWS, info.bounds,
        )
    return info


def _read_rows(ds, key: str, start: int, stop: int, chunk_rows: int, path: Path, labels: bool) -> np.ndarray:
    out = np.empty((stop - start, ds.shape[1]), dtype=np.float32)
    for lo in range(start, stop, chunk_rows):
        hi = min(lo + chunk_rows, stop)
        block = ds[lo:hi]
        if labels:
            bad = ~((block == 0) | (block == 1))
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise DataError(
                    f"{path}: dataset {key!r} must be multi-hot (0/1); row {lo + r}, column {c} holds "
                    f"{block[r, c]!r}"
                )
        elif not np.isfinite(block).all():
            r = int(np.argwhere(~np.isfinite(block).all(axis=1))[0, 0])
            raise DataError(f"{path}: dataset {key!r} has NaN or inf values (first in row {lo + r})")
        out[lo - start : hi - start] = block
    return out


def load_split(path: str | Path, name: str, split: Sequence[int] | None = None, *, chunk_rows: int = 2048,
               info: MMIMDBInfo | None = None, **dims) -> MMIMDBSplit:
    """Read one split (``"train"``, ``"valid"`` or ``"test"``) into memory as float32 arrays.

    Rows are read in contiguous chunks of ``chunk_rows``; each chunk is checked (finite features, 0/1 labels).
    ``info`` from :func:`inspect_file` skips the layout check; ``dims`` are passed to it otherwise.
    """
    key = _SPLIT_ALIASES.get(str(name).lower())
    if key is None:
        raise DataError(f"unknown MM-IMDB split {name!r}; choose one of {list(SPLITS)}")
    if chunk_rows <= 0:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    info = info if info is not None else inspect_file(path, split, **dims)
    start, stop = info.bounds[key]
    h5py = _import_h5py()
    with h5py.File(info.path, "r") as h5:
        text = _read_rows(h5[TEXT_KEY], TEXT_KEY, start, stop, chunk_rows, info.path, labels=False)
        image = _read_rows(h5[IMAGE_KEY], IMAGE_KEY, start, stop, chunk_rows, info.path, labels=False)
        labels = _read_rows(h5[LABEL_KEY], LABEL_KEY, start, stop, chunk_rows, info.path, labels=True)
    if key == "train":
        empty = np.flatnonzero(labels.sum(axis=0) == 0)
        if empty.size:
            log.warning("%s: labels %s never occur in the training split", info.path, empty.tolist())
    return MMIMDBSplit(name=key, start=start, stop=stop, text=text, image=image, labels=labels)


def load_splits(path: str | Path, split: Sequence[int] | None = None, names: Sequence[str] = SPLITS,
                **kwargs) -> dict[str, MMIMDBSplit]:
    """:func:`load_split` for several splits, checking the file once."""
    info = kwargs.pop("info", None) or inspect_file(
        path, split, **{k: kwargs.pop(k) for k in ("text_dim", "image_dim", "num_labels") if k in kwargs}
    )
    return {n: load_split(path, n, info=info, **kwargs) for n in names}


def write_mmimdb_file(path: str | Path, text: np.ndarray, image: np.ndarray, genres: np.ndarray, *,
                      with_images: bool = True, chunk_rows: int = 2048) -> Path:
    """Write arrays in the MultiBench layout (``features``, ``vgg_features``, ``genres``, ``imdb_ids``).

    With ``with_images`` an ``images`` dataset of the real per-row shape (3, 256, 160, uint8) is declared too,
    chunked and never written, so it takes no disk space (it stands for the real file's posters, which the
    loader must not read). Used to make test and benchmark files and subsets of the real file.
    """
    h5py = _import_h5py()
    text, image, genres = np.asarray(text), np.asarray(image), np.asarray(genres)
    n = text.shape[0]
    if image.shape[0] != n or genres.shape[0] != n:
        raise ValueError(f"row counts differ: text {text.shape}, image {image.shape}, genres {genres.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        h5.create_dataset(TEXT_KEY, data=text.astype(np.float32, copy=False))
        ds = h5.create_dataset(IMAGE_KEY, shape=image.shape, dtype=np.float32)
        for lo in range(0, n, chunk_rows):
            ds[lo : lo + chunk_rows] = image[lo : lo + chunk_rows]
        h5.create_dataset(LABEL_KEY, data=genres.astype(np.int8, copy=False))
        h5.create_dataset("imdb_ids", data=np.array([f"tt{i:07d}".encode() for i in range(n)]))
        if with_images:
            h5.create_dataset("images", shape=(n, 3, 256, 160), dtype=np.uint8, chunks=(1, 3, 256, 160))
    return path
