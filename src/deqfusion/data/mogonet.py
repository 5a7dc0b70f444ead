"""Multi-omics classification data in the MOGONET file format (BRCA, ROSMAP, KIPAN, LGG).

A data folder holds, for each modality ``i`` (1, 2, 3, ...):

- ``{i}_tr.csv`` and ``{i}_te.csv``: samples x features, comma separated, no header;
- ``{i}_featname.csv``: one feature name per line (optional here; checked against the feature count if
  present);

and ``labels_tr.csv``, ``labels_te.csv``: one label per line, written as a float (``1.0e+00``), integers
``0..C-1``.

:func:`load_mogonet` reads and checks one folder; :func:`load_dataset` resolves a named dataset to a folder
(the rule of :mod:`deqfusion.data.paths`: an explicit folder, ``$DEQFUSION_DATA_DIR/<name>``, the cache, or a
download from the MOGONET repository, every file SHA-256 checked where hashes are recorded) and loads it. A named
dataset's known sample and feature counts and class count are always checked; ``verify=False`` skips the hashes
only. A folder that holds another named dataset's files (recognised by their recorded hashes or known shapes)
is refused, so that one dataset's results are never labelled with another's name. Scaling is the reference's per-feature
min-max scaling fitted on training samples (:meth:`OmicsData.minmax_scaled`), kept separate from loading so
that a caller can fit it on the part of the training files it actually trains on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from . import download
from .paths import resolve_dataset_folder

log = logging.getLogger(__name__)

__all__ = [
    "DatasetSpec",
    "DATASETS",
    "MOGONET_URL",
    "OmicsData",
    "load_mogonet",
    "load_dataset",
    "resolve_data_dir",
    "dataset_files",
    "known_checksums",
    "identify_other_dataset",
]

#: raw files of the MOGONET repository at a pinned commit; ``<url>/<FOLDER>/<file>``
MOGONET_URL = "https://raw.githubusercontent.com/txWang/MOGONET/32d9066b7fe289b3f7cdb496a5668834079c274c"

#: scaling epsilon of the reference (added to the shifted maximum)
MINMAX_EPS = 1e-10


@dataclass(frozen=True)
class DatasetSpec:
    """What is known about a named MOGONET-format dataset.

    ``None`` fields are not checked. ``remote_folder`` is the folder in the MOGONET repository (None: not
    downloadable). ``checksums`` names a list in ``deqfusion/data/checksums/`` (None: shapes are checked
    instead).
    """

    name: str
    num_classes: int
    num_modalities: int = 3
    n_train: int | None = None
    n_test: int | None = None
    feature_dims: tuple[int, ...] | None = None
    class_names: tuple[str, ...] | None = None
    modality_names: tuple[str, ...] = ("mRNA", "DNA methylation", "miRNA")
    remote_folder: str | None = None
    checksums: str | None = None


DATASETS: dict[str, DatasetSpec] = {
    "rosmap": DatasetSpec("rosmap", 2, 3, 245, 106, (200, 200, 200), ("control", "AD"),
                          remote_folder="ROSMAP", checksums="rosmap.txt"),
    "brca": DatasetSpec("brca", 5, 3, 612, 263, (1000, 1000, 503),
                        ("Normal-like", "Basal-like", "HER2-enriched", "Luminal A", "Luminal B"),
                        remote_folder="BRCA"),
    # not in the MOGONET repository: local folders only; only the class count is checked
    "kipan": DatasetSpec("kipan", 3),
    "lgg": DatasetSpec("lgg", 2),
}


def dataset_files(num_modalities: int, with_featnames: bool = True) -> list[str]:
    names = []
    for i in range(1, num_modalities + 1):
        names += [f"{i}_tr.csv", f"{i}_te.csv"] + ([f"{i}_featname.csv"] if with_featnames else [])
    return names + ["labels_tr.csv", "labels_te.csv"]


def known_checksums(spec: DatasetSpec) -> dict[str, str] | None:
    """The recorded ``{file: sha256}`` of a dataset, or None when none are recorded."""
    if spec.checksums is None:
        return None
    ref = resources.files("deqfusion.data").joinpath("checksums", spec.checksums)
    return download.parse_checksums(ref.read_text(), f"checksums/{spec.checksums}")


@dataclass
class OmicsData:
    """One MOGONET-format dataset in memory (float32 features, int64 labels).

    Attributes:
        x_train, x_test: one ``(N, d_i)`` tensor per selected modality.
        modalities: the 1-based modality numbers the tensors came from.
        scaling: None for raw values, else a note of how the values were scaled.
    """

    name: str
    folder: Path
    modalities: list[int]
    modality_names: list[str]
    x_train: list[Tensor]
    y_train: Tensor
    x_test: list[Tensor]
    y_test: Tensor
    num_classes: int
    feature_names: list[list[str] | None]
    class_names: list[str] | None = None
    scaling: str | None = None

    @property
    def in_dims(self) -> list[int]:
        return [int(x.shape[1]) for x in self.x_train]

    @property
    def n_train(self) -> int:
        return int(self.y_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.y_test.shape[0])

    def class_counts(self, split: str = "train") -> list[int]:
        y = self.y_train if split == "train" else self.y_test
        return torch.bincount(y, minlength=self.num_classes).tolist()

    def minmax_scaled(self, fit_index: Sequence[int] | Tensor | None = None) -> OmicsData:
        """A copy with every feature min-max scaled by statistics of training samples ``fit_index``.

        The reference's rule: ``x <- x - min``; ``x <- x / (max(x) + 1e-10)``, min and max taken over the fit
        samples (default: all training samples) and applied unchanged to every train and test sample (so
        values outside the fit range fall outside [0, 1]).
        """
        if self.scaling is not None:
            raise ValueError(f"data are already scaled ({self.scaling})")
        idx = None if fit_index is None else torch.as_tensor(fit_index, dtype=torch.long)
        if idx is not None and idx.numel() == 0:
            raise ValueError("fit_index is empty")
        xs_tr, xs_te = [], []
        for x_tr, x_te in zip(self.x_train, self.x_test, strict=True):
            fit = x_tr if idx is None else x_tr[idx]
            lo = fit.min(dim=0).values
            hi = (fit - lo).max(dim=0).values + MINMAX_EPS
            xs_tr.append((x_tr - lo) / hi)
            xs_te.append((x_te - lo) / hi)
        note = "minmax(train)" if idx is None else f"minmax(train subset of {idx.numel()})"
        return replace(self, x_train=xs_tr, x_test=xs_te, scaling=note)

    def summary(self) -> dict:
        return {
            "name": self.name,
            "folder": str(self.folder),
            "modalities": list(self.modalities),
            "modality_names": list(self.modality_names),
            "in_dims": self.in_dims,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "num_classes": self.num_classes,
            "train_class_counts": self.class_counts("train"),
            "test_class_counts": self.class_counts("test"),
            "scaling": self.scaling,
        }


# ---------------------------------------------------------------------------------------------- reading


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return path.read_text()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _read_matrix(path: Path) -> np.ndarray:
    """Samples x features of floats, comma separated, no header; every row the same length, all finite."""
    text = _read_text(path)
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path}: file is empty")
    rows = []
    width = None
    for lineno, line in enumerate(lines, 1):
        tokens = line.split(",")
        if tokens and tokens[-1].strip() == "" and len(tokens) > 1:
            tokens = tokens[:-1]  # a trailing comma
        if width is None:
            width = len(tokens)
        elif len(tokens) != width:
            raise DataError(f"{path}, line {lineno}: {len(tokens)} values, but line 1 has {width}")
        try:
            rows.append(np.array(tokens, dtype=np.float64))
        except ValueError:
            col, tok = next((j, t) for j, t in enumerate(tokens, 1) if not _is_float(t))
            hint = " (these files have no header line)" if lineno == 1 else ""
            raise DataError(
                f"{path}, line {lineno}, column {col}: {tok.strip()!r} is not a number{hint}"
            ) from None
    arr = np.stack(rows)
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"{path}: {int(bad.sum())} NaN/inf value(s), first at line {r + 1}, column {c + 1}")
    return arr


def _is_float(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def _read_labels(path: Path, num_classes: int | None) -> np.ndarray:
    arr = _read_matrix(path)
    if arr.shape[1] != 1:
        raise DataError(f"{path}: expected one label per line, got {arr.shape[1]} values per line")
    y = arr[:, 0]
    frac = np.flatnonzero(y != np.round(y))
    if frac.size:
        raise DataError(f"{path}, line {frac[0] + 1}: label {float(y[frac[0]])!r} is not an integer")
    neg = np.flatnonzero(y < 0)
    if neg.size:
        raise DataError(f"{path}, line {neg[0] + 1}: label {int(y[neg[0]])} is negative")
    if num_classes is not None:
        big = np.flatnonzero(y >= num_classes)
        if big.size:
            raise DataError(f"{path}, line {big[0] + 1}: label {int(y[big[0]])} is out of range for "
                            f"{num_classes} classes (expected 0..{num_classes - 1})")
    return y.astype(np.int64)


def _read_featnames(path: Path, n_features: int) -> list[str] | None:
    if not path.is_file():
        log.debug("%s not found; feature names unavailable", path)
        return None
    names = [ln.strip() for ln in _read_text(path).splitlines()]
    while names and not names[-1]:
        names.pop()
    if len(names) != n_features:
        raise DataError(f"{path}: {len(names)} feature names for {n_features} features")
    return names


def load_mogonet(folder: str | Path, modalities: Sequence[int] | None = None, num_classes: int | None = None,
                 name: str | None = None, modality_names: Sequence[str] | None = None,
                 class_names: Sequence[str] | None = None) -> OmicsData:
    """Read and check a MOGONET-format folder (raw, unscaled values).

    Args:
        folder: the data folder.
        modalities: 1-based modality numbers to load (default: 1, 2, 3, ... as long as ``{i}_tr.csv`` exists).
        num_classes: expected number of classes (labels must lie in ``0..C-1``); default: inferred as
            ``max(label) + 1``.
    Raises:
        DataError naming the file and the problem: missing, not numeric, ragged rows, NaN/inf, sample counts
        that differ between modalities and labels, feature counts that differ between train and test, labels
        that are not integers or out of range, a class with no training sample.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data folder not found: {folder}")
    if modalities is None:
        found = sorted({int(m.group(1)) for p in folder.iterdir()
                        if (m := re.fullmatch(r"(\d+)_(tr|te)\.csv", p.name))})
        if not found:
            raise DataError(f"{folder}: no modality files found (expected 1_tr.csv, 1_te.csv, ...)")
        gaps = sorted(set(range(1, found[-1] + 1)) - set(found))
        if gaps or found[0] < 1:
            raise DataError(f"{folder}: modality files are not numbered 1..{found[-1]} (found {found}); pass the "
                            "modalities to load")
        modalities = found
    modalities = [int(m) for m in modalities]
    if not modalities or any(m < 1 for m in modalities) or len(set(modalities)) != len(modalities):
        raise DataError(f"modalities must be distinct numbers >= 1, got {modalities}")

    y_tr = _read_labels(folder / "labels_tr.csv", num_classes)
    y_te = _read_labels(folder / "labels_te.csv", num_classes)
    if num_classes is None:
        num_classes = int(max(y_tr.max(), y_te.max())) + 1
    counts = np.bincount(y_tr, minlength=num_classes)
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0).tolist()
        raise DataError(f"{folder / 'labels_tr.csv'}: class(es) {missing} have no training sample")

    xs_tr, xs_te, featnames = [], [], []
    for m in modalities:
        p_tr, p_te = folder / f"{m}_tr.csv", folder / f"{m}_te.csv"
        x_tr, x_te = _read_matrix(p_tr), _read_matrix(p_te)
        if x_tr.shape[0] != y_tr.shape[0]:
            raise DataError(f"{p_tr}: {x_tr.shape[0]} samples, but labels_tr.csv has {y_tr.shape[0]} labels")
        if x_te.shape[0] != y_te.shape[0]:
            raise DataError(f"{p_te}: {x_te.shape[0]} samples, but labels_te.csv has {y_te.shape[0]} labels")
        if x_tr.shape[1] != x_te.shape[1]:
            raise DataError(f"{p_te}: {x_te.shape[1]} features, but {p_tr.name} has {x_tr.shape[1]}")
        featnames.append(_read_featnames(folder / f"{m}_featname.csv", x_tr.shape[1]))
        xs_tr.append(torch.from_numpy(x_tr).float())
        xs_te.append(torch.from_numpy(x_te).float())

    if modality_names is None:
        mod_names = [f"omics{m}" for m in modalities]
    else:
        mod_names = [modality_names[m - 1] if m - 1 < len(modality_names) else f"omics{m}"
                     for m in modalities]
    return OmicsData(
        name=name or folder.name,
        folder=folder,
        modalities=modalities,
        modality_names=mod_names,
        x_train=xs_tr,
        y_train=torch.from_numpy(y_tr),
        x_test=xs_te,
        y_test=torch.from_numpy(y_te),
        num_classes=num_classes,
        feature_names=featnames,
        class_names=list(class_names) if class_names is not None else None,
    )


# ------------------------------------------------------------------------------------ named datasets


def _get_spec(name: str) -> DatasetSpec:
    key = name.lower()
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)} or pass a data folder")
    return DATASETS[key]


def resolve_data_dir(name: str, data_dir: str | Path | None = None, *, download_missing: bool = True,
                     source: str | Path | None = None, cache_dir: str | Path | None = None) -> Path:
    """The folder to load dataset ``name`` from, by the rule of :mod:`deqfusion.data.paths`.

    ``data_dir`` (the dataset folder or a root holding ``<name>/``); ``$DEQFUSION_DATA_DIR/<name>`` (or the
    upper-case name); ``<cache>/mogonet/<name>``; then, if ``download_missing``, the files are fetched from
    ``source`` (a URL or a local folder; default the dataset's folder in the MOGONET repository at a pinned
    commit) into the cache, each checked against the recorded SHA-256 where one exists. A local folder missing
    any modality or label file is an error naming the files.
    """
    spec = _get_spec(name)

    def fetch(dest: Path) -> None:
        src = source if source is not None else f"{MOGONET_URL}/{spec.remote_folder}"
        checksums = known_checksums(spec)
        log.info("fetching %s from %s into %s", spec.name, src, dest)
        try:
            download.fetch_files(src, dataset_files(spec.num_modalities), dest, checksums)
        except DataError as exc:
            raise DataError(f"{exc} (to use a local copy, pass --data-dir DIR or set DEQFUSION_DATA_DIR to the "
                            "folder holding rosmap/, brca/, ...)") from None
        if checksums is None:
            digests = {f: download.sha256_file(dest / f) for f in dataset_files(spec.num_modalities)}
            log.info("no recorded hashes for %s; fetched files have SHA-256 %s (shapes are checked instead)",
                     spec.name, digests)

    return resolve_dataset_folder(
        spec.name, dataset_files(spec.num_modalities, with_featnames=False), data_dir, what=f"{spec.name} dataset",
        aliases=(spec.name.upper(),), cache_dir=cache_dir, cache_subdir="mogonet",
        fetch=fetch if source is not None or spec.remote_folder is not None else None,
        download_missing=download_missing)


def _check_spec_shapes(data: OmicsData, spec: DatasetSpec) -> None:
    where = str(data.folder)
    if spec.n_train is not None and data.n_train != spec.n_train:
        raise DataError(f"{where}: {data.n_train} training samples, but {spec.name} has {spec.n_train}")
    if spec.n_test is not None and data.n_test != spec.n_test:
        raise DataError(f"{where}: {data.n_test} test samples, but {spec.name} has {spec.n_test}")
    if spec.feature_dims is not None:
        for m, d in zip(data.modalities, data.in_dims, strict=True):
            if m - 1 < len(spec.feature_dims) and d != spec.feature_dims[m - 1]:
                raise DataError(f"{where}: modality {m} has {d} features, but {spec.name} has "
                                f"{spec.feature_dims[m - 1]}")


def _matches_shapes(data: OmicsData, spec: DatasetSpec) -> bool:
    """Whether ``data`` has every sample and feature count recorded for ``spec`` (False when none are recorded)."""
    if spec.n_train is None or spec.n_test is None or spec.feature_dims is None:
        return False
    return (data.n_train, data.n_test) == (spec.n_train, spec.n_test) and all(
        m - 1 < len(spec.feature_dims) and d == spec.feature_dims[m - 1]
        for m, d in zip(data.modalities, data.in_dims, strict=True))


def identify_other_dataset(folder: Path, spec: DatasetSpec, data: OmicsData | None = None) -> str | None:
    """Why ``folder`` looks like another named dataset than ``spec`` (None if it does not): a label file whose
    SHA-256 is recorded for another dataset, or every recorded sample and feature count of another dataset
    (when ``spec`` records none of its own that would tell them apart)."""
    for other in DATASETS.values():
        if other.name == spec.name:
            continue
        sums = known_checksums(other)
        if sums:
            for f in ("labels_tr.csv", "labels_te.csv"):
                if f in sums and (folder / f).is_file() and download.sha256_file(folder / f) == sums[f]:
                    return f"{f} has the SHA-256 recorded for {other.name}"
        if data is not None and _matches_shapes(data, other) and not _matches_shapes(data, spec):
            return (f"its sample and feature counts ({data.n_train} / {data.n_test} samples, {data.in_dims} "
                    f"features) are those of {other.name}")
    return None


def load_dataset(name: str, data_dir: str | Path | None = None, modalities: Sequence[int] | None = None, *,
                 download_missing: bool = True, source: str | Path | None = None,
                 cache_dir: str | Path | None = None, verify: bool = True) -> OmicsData:
    """Resolve (and if needed fetch) a named dataset, check it, and load it (raw values).

    Every dataset has its class count and its known sample and feature counts checked, and a folder holding
    another named dataset's files is refused. ``verify`` also checks every file read against its recorded
    SHA-256 (for datasets with recorded hashes); pass ``verify=False`` for a modified copy of the same dataset.
    """
    spec = _get_spec(name)
    folder = resolve_data_dir(spec.name, data_dir, download_missing=download_missing, source=source,
                              cache_dir=cache_dir)
    mods = list(modalities) if modalities is not None else list(range(1, spec.num_modalities + 1))
    if any(m < 1 or m > spec.num_modalities for m in mods):
        raise DataError(f"{spec.name} has modalities 1..{spec.num_modalities}, got {mods}")
    checksums = known_checksums(spec) if verify else None
    if checksums is not None:
        names = [f for m in mods for f in (f"{m}_tr.csv", f"{m}_te.csv")] + ["labels_tr.csv", "labels_te.csv"]
        try:
            download.verify_folder(folder, checksums, names)
        except DataError as exc:
            raise DataError(f"{exc} (use --no-verify to load a modified copy)") from None
    data = load_mogonet(folder, mods, num_classes=spec.num_classes, name=spec.name,
                        modality_names=spec.modality_names, class_names=spec.class_names)
    other = identify_other_dataset(folder, spec, data)
    if other is not None:
        raise DataError(f"{folder} does not hold the {spec.name} dataset: {other}; pass the matching --dataset "
                        f"or the {spec.name} folder")
    _check_spec_shapes(data, spec)
    return data
