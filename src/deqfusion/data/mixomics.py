"""TCGA breast cancer subtypes in the mixOmics ``breast.TCGA`` layout, converted to CSV: a real missing modality.

Folder layout (``$DEQFUSION_DATA_DIR/tcga-breast-mixomics``)::

    train_mrna.csv  train_mirna.csv  train_protein.csv  train_subtype.csv
    test_mrna.csv   test_mirna.csv                      test_subtype.csv

Each matrix file has a header row of feature names (its first cell empty) and one row per sample starting with
the sample's name; ``*_subtype.csv`` has a ``subtype`` header and one label per line (``Basal``, ``Her2``,
``LumA``), in the sample order of the matrices (they carry no sample names). The training part has 150 samples with
all three omics; the test part has 70 samples and **no protein** file: a modality missing for real.

Every file is required except the test files of the modalities the caller's protocol declares absent
(``test_missing=("protein",)`` for this folder); a test file that is absent without being declared so is an
error, never a test set with one more modality missing than the caller believes. The folder is found by the
rule of :mod:`deqfusion.data.paths` (``--data-dir``, ``$DEQFUSION_DATA_DIR/tcga-breast-mixomics``, the cache).

:func:`load_mixomics` reads and checks everything (same samples in the same order in every file of a split, the same
features in the same order in train and test, numbers only, no NaN/inf, labels among the declared classes
:data:`CLASSES`, every class present in training) and raises :class:`~deqfusion.errors.DataError` naming the file
(and line) and the problem.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..errors import DataError
from .paths import resolve_dataset_folder

log = logging.getLogger(__name__)

__all__ = ["MODALITIES", "CLASSES", "FOLDER", "MixOmicsData", "load_mixomics", "resolve_folder", "required_files"]

#: modality names in the order the models receive them
MODALITIES = ("mrna", "mirna", "protein")
#: the subtypes ``breast.TCGA`` declares, in class-index order
CLASSES = ("Basal", "Her2", "LumA")
#: folder name under the data root
FOLDER = "tcga-breast-mixomics"


@dataclass
class MixOmicsData:
    """The loaded data set.

    Attributes:
        folder: where it was read from.
        modalities: modality names, in model order.
        x_train: name -> ``(n_train, d)`` float32 tensor for every modality.
        x_test: name -> ``(n_test, d)`` float32 tensor, for the modalities the test part has (others absent).
        y_train, y_test: class indices (int64).
        class_names: label strings, index = class.
        feature_names: name -> list of feature names.
        train_samples, test_samples: sample names.
    """

    folder: Path
    modalities: tuple[str, ...]
    x_train: dict[str, Tensor]
    x_test: dict[str, Tensor]
    y_train: Tensor
    y_test: Tensor
    class_names: list[str]
    feature_names: dict[str, list[str]] = field(repr=False, default_factory=dict)
    train_samples: list[str] = field(repr=False, default_factory=list)
    test_samples: list[str] = field(repr=False, default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_dims(self) -> dict[str, int]:
        return {m: int(self.x_train[m].shape[1]) for m in self.modalities}

    @property
    def test_missing(self) -> list[str]:
        """Modalities absent from the test part."""
        return [m for m in self.modalities if m not in self.x_test]

    def minmax_scaled(self, fit_index: Tensor | Sequence[int] | None = None) -> MixOmicsData:
        """Per-feature min-max scaling fitted on the training rows ``fit_index`` (default: all), applied to every
        row of both parts (as in the MOGONET preprocessing: subtract the minimum, divide by the shifted
        maximum + 1e-10)."""
        idx = slice(None) if fit_index is None else torch.as_tensor(fit_index, dtype=torch.long)
        tr, te = {}, {}
        for m in self.modalities:
            ref = self.x_train[m][idx]
            lo = ref.min(0).values
            hi = (ref - lo).max(0).values + 1e-10
            tr[m] = (self.x_train[m] - lo) / hi
            if m in self.x_test:
                te[m] = (self.x_test[m] - lo) / hi
        return MixOmicsData(self.folder, self.modalities, tr, te, self.y_train, self.y_test, self.class_names,
                            self.feature_names, self.train_samples, self.test_samples)

    def summary(self) -> dict:
        return {
            "folder": str(self.folder),
            "modalities": list(self.modalities),
            "in_dims": self.in_dims,
            "n_train": int(self.y_train.numel()),
            "n_test": int(self.y_test.numel()),
            "test_missing": self.test_missing,
            "classes": self.class_names,
            "train_class_counts": torch.bincount(self.y_train, minlength=self.num_classes).tolist(),
            "test_class_counts": torch.bincount(self.y_test, minlength=self.num_classes).tolist(),
        }


def _check_missing(test_missing: Iterable[str]) -> tuple[str, ...]:
    out = tuple(test_missing)
    bad = [m for m in out if m not in MODALITIES]
    if bad:
        raise DataError(f"test_missing names unknown modalities {bad}; choose from {list(MODALITIES)}")
    if len(set(out)) == len(MODALITIES):
        raise DataError("test_missing declares every modality absent; the test part needs at least one")
    return out


def required_files(test_missing: Iterable[str] = ()) -> list[str]:
    """The files the folder must hold when the modalities ``test_missing`` are declared absent from the test part."""
    absent = set(_check_missing(test_missing))
    return ([f"train_{m}.csv" for m in MODALITIES] + ["train_subtype.csv"]
            + [f"test_{m}.csv" for m in MODALITIES if m not in absent] + ["test_subtype.csv"])


def resolve_folder(data_dir: str | Path | None, test_missing: Iterable[str] = (),
                   cache_dir: str | Path | None = None) -> Path:
    """The folder to read: ``data_dir`` itself or ``data_dir/tcga-breast-mixomics``; without ``data_dir``,
    ``$DEQFUSION_DATA_DIR/tcga-breast-mixomics`` or the cache (see :mod:`deqfusion.data.paths`). The folder must
    hold every file of :func:`required_files`."""
    return resolve_dataset_folder(FOLDER, required_files(test_missing), data_dir, what="mixOmics TCGA breast",
                                  cache_dir=cache_dir)


def _read_rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    if not rows:
        raise DataError(f"{path}: empty file")
    return rows


def _read_matrix(path: Path) -> tuple[list[str], list[str], Tensor]:
    """(sample names, feature names, values) of a matrix CSV with row and column names."""
    rows = _read_rows(path)
    header = [c.strip() for c in rows[0]]
    features = header[1:]
    if not features:
        raise DataError(f"{path}: the header row names no features")
    if len(set(features)) != len(features):
        raise DataError(f"{path}: duplicate feature names in the header")
    if len(rows) < 2:
        raise DataError(f"{path}: no sample rows")
    samples, values = [], []
    for lineno, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise DataError(f"{path}, line {lineno}: {len(row)} fields, the header has {len(header)}")
        samples.append(row[0].strip())
        try:
            vals = [float(c) for c in row[1:]]
        except ValueError:
            bad = next(c for c in row[1:] if not _is_float(c))
            raise DataError(f"{path}, line {lineno}: {bad!r} is not a number") from None
        if not all(math.isfinite(v) for v in vals):
            col = next(i for i, v in enumerate(vals) if not math.isfinite(v))
            raise DataError(f"{path}, line {lineno}: NaN or inf value (feature {features[col]!r}); impute or "
                            "remove it first")
        values.append(vals)
    if len(set(samples)) != len(samples):
        raise DataError(f"{path}: duplicate sample names")
    return samples, features, torch.tensor(values, dtype=torch.float32)


def _is_float(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _read_labels(path: Path) -> list[str]:
    rows = _read_rows(path)
    if len(rows[0]) != 1 or rows[0][0].strip().lower() != "subtype":
        raise DataError(f"{path}: expected a one-column file with the header 'subtype', got {rows[0]}")
    labels = []
    for lineno, row in enumerate(rows[1:], 2):
        if len(row) != 1 or not row[0].strip():
            raise DataError(f"{path}, line {lineno}: expected one label, got {row}")
        label = row[0].strip()
        if label not in CLASSES:
            raise DataError(f"{path}, line {lineno}: label {label!r} is not one of the declared classes "
                            f"{list(CLASSES)}")
        labels.append(label)
    if not labels:
        raise DataError(f"{path}: no labels")
    return labels


def load_mixomics(data_dir: str | Path | None = None, test_missing: Iterable[str] = (), *,
                  cache_dir: str | Path | None = None) -> MixOmicsData:
    """Load and check the folder (see the module docstring).

    Args:
        data_dir: the folder itself or the data root holding it (None: ``$DEQFUSION_DATA_DIR``, then the cache).
        test_missing: modalities the caller's protocol declares absent from the test part; their test files are
            neither required nor read. Every other file must be present.
    """
    absent = _check_missing(test_missing)
    folder = resolve_folder(data_dir, absent, cache_dir)
    x_train, x_test, feature_names = {}, {}, {}
    samples: dict[str, list[str]] = {}
    for split, target in (("train", x_train), ("test", x_test)):
        for m in MODALITIES:
            path = folder / f"{split}_{m}.csv"
            if split == "test" and m in absent:
                if path.is_file():
                    log.info("%s is present but the protocol declares %s absent from the test part; not read",
                             path, m)
                continue
            names, feats, values = _read_matrix(path)
            if split == "train":
                feature_names[m] = feats
            elif feats != feature_names[m]:
                raise DataError(f"{path}: its features differ from train_{m}.csv "
                                f"({len(feats)} vs {len(feature_names[m])} columns, or another order)")
            if split in samples and names != samples[split]:
                first = next(f"{split}_{k}.csv" for k in MODALITIES if k in target)
                raise DataError(f"{path}: its samples differ from {first} (other names or another order)")
            samples.setdefault(split, names)
            target[m] = values

    y_tr, y_te = _read_labels(folder / "train_subtype.csv"), _read_labels(folder / "test_subtype.csv")
    for split, ys in (("train", y_tr), ("test", y_te)):
        if len(ys) != len(samples[split]):
            raise DataError(f"{folder / (split + '_subtype.csv')}: {len(ys)} labels for {len(samples[split])} "
                            "samples")
    class_names = list(CLASSES)
    absent_classes = [c for c in class_names if c not in set(y_tr)]
    if absent_classes:
        raise DataError(f"{folder / 'train_subtype.csv'}: class(es) {absent_classes} have no training sample")
    overlap = set(samples["train"]) & set(samples["test"])
    if overlap:
        raise DataError(f"{folder}: {len(overlap)} sample(s) are in both the training and the test part")
    index = {c: i for i, c in enumerate(class_names)}
    data = MixOmicsData(
        folder=folder, modalities=MODALITIES, x_train=x_train, x_test=x_test,
        y_train=torch.tensor([index[c] for c in y_tr]), y_test=torch.tensor([index[c] for c in y_te]),
        class_names=class_names, feature_names=feature_names, train_samples=samples["train"],
        test_samples=samples["test"],
    )
    log.info("mixOmics TCGA breast data from %s: %s", folder, data.summary())
    return data
