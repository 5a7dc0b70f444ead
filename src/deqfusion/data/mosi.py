"""CMU-MOSI loaders: utterance-level tri-modal features and the Cross-Modal BERT files.

Two real sources are read here.

1. **Utterance features** (the bc-LSTM release of declare-lab): ``text/text_{train0,test0}.csv`` (100-d),
   ``audio/audio_{train0,test0}.csv`` (73-d openSMILE), ``video/video_{train0,test0}.csv`` (100-d), every
   value a quoted string, the last column the binary label, row ``i`` of the three files the same utterance,
   in a speaker-independent 1447 / 752 split of their own. ``utterance_index.csv`` maps each utterance to its
   continuous label in [-3, 3] and to its place in the standard 1284 / 229 / 686 split (the split of the
   Cross-Modal BERT text files). :func:`load_mosi_features` joins the three modality files through that index
   into the standard split; utterances whose continuous label is unknown are dropped and counted.

2. **Cross-Modal BERT files**: ``{train,dev,test}.tsv`` (``text<TAB>label`` with a header line), read by
   :func:`load_mosi_text`, and the audio pickle holding a ``(train, valid, test)`` tuple of ``(n, 50, 5)``
   arrays of word-aligned COVAREP features, read by :func:`load_mosi_audio` (with a restricted unpickler that
   only rebuilds numpy arrays) and checked against the text files by :func:`check_alignment`.

Every malformed input raises :class:`deqfusion.errors.DataError` naming the file and the problem.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .paths import resolve_dataset_folder

log = logging.getLogger(__name__)

MODALITIES = ("text", "audio", "video")
SPLITS = ("train", "dev", "test")
#: utterance counts of the standard split (before utterances without a continuous label are dropped)
STANDARD_SIZES = {"train": 1284, "dev": 229, "test": 686}
#: name of the folder holding the bc-LSTM release inside a data root
FEATURES_FOLDER = "cmu-mosi-bclstm"
#: name of the folder holding the Cross-Modal BERT transcripts inside a data root
TEXT_FOLDER = "cmu-mosi-text"
LABEL_RANGE = (-3.0, 3.0)

_INDEX_COLUMNS = ("utt_id", "label_bin", "label_cont", "cmbert_split", "bclstm_split", "bclstm_row")
_BCLSTM_SPLITS = {"train": "train0", "test": "test0"}


# ----------------------------------------------------------------------------------------------------------
# utterance-level features
# ----------------------------------------------------------------------------------------------------------


@dataclass
class MosiSplit:
    """One split of the utterance-level data.

    Attributes:
        features: modality name -> ``(n, d)`` float32 array.
        labels: ``(n,)`` float32 continuous sentiment in [-3, 3].
        ids: utterance ids (``<video>_<n>``), in row order.
        source: the bc-LSTM split (``"train"``/``"test"``) each utterance's features come from. The bc-LSTM
            feature extractors were fitted on their own train split, so features of ``"train"`` utterances
            carry label information (see :func:`select_rows`).
    """

    features: dict[str, np.ndarray]
    labels: np.ndarray
    ids: list[str]
    source: list[str] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, modalities: Sequence[str]) -> MosiSplit:
        return MosiSplit({m: self.features[m] for m in modalities}, self.labels, list(self.ids), self.source)

    def select_rows(self, keep: np.ndarray) -> MosiSplit:
        """The rows where the boolean array ``keep`` is True."""
        keep = np.asarray(keep, dtype=bool)
        idx = np.flatnonzero(keep)
        return MosiSplit(
            {m: x[idx] for m, x in self.features.items()}, self.labels[idx], [self.ids[i] for i in idx],
            None if self.source is None else [self.source[i] for i in idx],
        )


@dataclass
class MosiFeatureData:
    """The standard split of utterance-level features.

    Attributes:
        splits: ``"train"``, ``"dev"``, ``"test"`` -> :class:`MosiSplit`.
        dims: modality -> feature dimension.
        dropped: split -> number of utterances dropped because they have no continuous label.
        dropped_by_source: the same count by bc-LSTM split (``"train"``/``"test"``) of the dropped utterances.
        root: the folder the files were read from.
        standardization: per-modality ``(mean, std)`` fitted on train when :func:`standardize` was applied.
    """

    splits: dict[str, MosiSplit]
    dims: dict[str, int]
    dropped: dict[str, int]
    root: Path
    standardization: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    dropped_by_source: dict[str, int] = field(default_factory=dict)

    @property
    def modalities(self) -> list[str]:
        return list(self.dims)

    def counts(self) -> dict[str, int]:
        return {s: len(self.splits[s]) for s in self.splits}

    def summary(self) -> dict:
        return {
            "root": str(self.root),
            "counts": self.counts(),
            "dropped_no_continuous_label": dict(self.dropped),
            "dropped_by_bclstm_split": dict(self.dropped_by_source),
            "dims": dict(self.dims),
            "standardized": sorted(self.standardization),
        }


def feature_files() -> list[str]:
    """The files a bc-LSTM feature folder must hold."""
    return ["utterance_index.csv"] + [f"{m}/{m}_{suffix}.csv" for m in MODALITIES
                                      for suffix in _BCLSTM_SPLITS.values()]


def resolve_features_root(path: str | Path | None = None) -> Path:
    """The folder holding the bc-LSTM features: ``path`` itself or ``path/cmu-mosi-bclstm``; without ``path``,
    ``$DEQFUSION_DATA_DIR/cmu-mosi-bclstm`` or the cache (the rule of :mod:`deqfusion.data.paths`). A folder
    missing any of :func:`feature_files` is an error naming them."""
    return resolve_dataset_folder(FEATURES_FOLDER, feature_files(), path, what="MOSI feature")


def _read_feature_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one bc-LSTM feature file: returns ``(features (n, d), binary labels (n,))``."""
    if not path.is_file():
        raise DataError(f"feature file not found: {path}")
    rows: list[list[float]] = []
    width = None
    with open(path, newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if width is None:
                width = len(row)
                if width < 2:
                    raise DataError(f"{path}, line {lineno}: expected features and a label, got 1 column")
            elif len(row) != width:
                raise DataError(f"{path}, line {lineno}: {len(row)} columns, but line 1 has {width}")
            try:
                vals = [float(c) for c in row]
            except ValueError:
                bad = next(c for c in row if not _is_float(c))
                raise DataError(f"{path}, line {lineno}: not a number: {bad!r}") from None
            rows.append(vals)
    if not rows:
        raise DataError(f"{path} is empty")
    arr = np.asarray(rows, dtype=np.float64)
    if not np.isfinite(arr).all():
        r = int(np.argwhere(~np.isfinite(arr))[0, 0])
        raise DataError(f"{path}: row {r + 1} holds NaN or inf")
    labels = arr[:, -1]
    if not np.isin(labels, (0.0, 1.0)).all():
        r = int(np.argwhere(~np.isin(labels, (0.0, 1.0)))[0, 0])
        raise DataError(f"{path}, row {r + 1}: last column should be the binary label 0/1, got {labels[r]}")
    return arr[:, :-1].astype(np.float32), labels.astype(np.int64)


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _read_index(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"index file not found: {path}")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _INDEX_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; header is {reader.fieldnames}")
        rows = []
        for lineno, r in enumerate(reader, start=2):
            r["_line"] = lineno
            rows.append(r)
    if not rows:
        raise DataError(f"{path} has a header but no rows")
    return rows


def load_mosi_features(path: str | Path | None, modalities: Sequence[str] = MODALITIES) -> MosiFeatureData:
    """Join the bc-LSTM feature files through ``utterance_index.csv`` into the standard split.

    Checks, each failing with a :class:`DataError` naming the file: the three modality files of a bc-LSTM
    split have the same number of rows and the same binary label in every row; every index row points at an
    existing feature row, no feature row is used twice, and the index's binary label agrees with the feature
    files' (the alignment check); continuous labels are numbers in [-3, 3]; split names are known. When
    ``text_{train,test}.csv`` (first column = transcript row) is present, the index's ``transcript_row`` is
    checked against it as well.

    Utterances with an empty continuous label are dropped and counted in ``dropped``.
    """
    root = resolve_features_root(path)
    modalities = list(modalities)
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise DataError(f"unknown modality name(s) {unknown or modalities}; choose from {list(MODALITIES)}")
    if len(set(modalities)) != len(modalities):
        raise DataError(f"modalities listed twice: {modalities}")

    # feature files of the bc-LSTM split, and their binary labels
    feats: dict[tuple[str, str], np.ndarray] = {}
    bin_labels: dict[str, np.ndarray] = {}
    for bsplit, suffix in _BCLSTM_SPLITS.items():
        # all three are read, so that their row alignment is always checked; a row count that differs from the
        # others' is blamed on the file that has it
        read = {m: _read_feature_csv(root / m / f"{m}_{suffix}.csv") for m in MODALITIES}
        counts = [len(y) for _, y in read.values()]
        if len(set(counts)) > 1:
            common = max(set(counts), key=counts.count)
            odd = next(m for m in MODALITIES if len(read[m][1]) != common)
            raise DataError(
                f"{root / odd / f'{odd}_{suffix}.csv'} has {len(read[odd][1])} rows but the other modality files "
                f"of the {bsplit} split have {common}: rows must be the same utterances in the same order"
            )
        for m in MODALITIES:
            fpath = root / m / f"{m}_{suffix}.csv"
            x, y = read[m]
            if bsplit in bin_labels:
                ref = bin_labels[bsplit]
                if not np.array_equal(y, ref):
                    r = int(np.argmax(y != ref))
                    raise DataError(
                        f"{fpath}: binary label of row {r + 1} ({y[r]}) differs from the other modality "
                        f"files ({ref[r]}); the files are not row-aligned"
                    )
            else:
                bin_labels[bsplit] = y
            if (m, "dim") in feats and feats[(m, "dim")].shape[1] != x.shape[1]:
                raise DataError(
                    f"{fpath} has {x.shape[1]} features, the other split of {m} has "
                    f"{feats[(m, 'dim')].shape[1]}"
                )
            feats[(m, bsplit)] = x
            feats[(m, "dim")] = x[:0]

    index_path = root / "utterance_index.csv"
    rows = _read_index(index_path)
    transcript_rows = _read_transcript_rows(root)

    used: dict[tuple[str, int], int] = {}
    picked: dict[str, list[tuple[str, int, float, str]]] = {s: [] for s in SPLITS}
    dropped = {s: 0 for s in SPLITS}
    dropped_src = {b: 0 for b in _BCLSTM_SPLITS}
    for r in rows:
        line = r["_line"]
        split = r["cmbert_split"].strip()
        if split not in SPLITS:
            raise DataError(f"{index_path}, line {line}: cmbert_split {split!r} is not one of {list(SPLITS)}")
        bsplit = r["bclstm_split"].strip()
        if bsplit not in _BCLSTM_SPLITS:
            raise DataError(f"{index_path}, line {line}: bclstm_split {bsplit!r} is not one of "
                            f"{list(_BCLSTM_SPLITS)}")
        try:
            brow = int(r["bclstm_row"])
        except ValueError:
            raise DataError(
                f"{index_path}, line {line}: bclstm_row {r['bclstm_row']!r} is not an integer"
            ) from None
        n_rows = len(bin_labels[bsplit])
        if not 0 <= brow < n_rows:
            raise DataError(
                f"{index_path}, line {line}: bclstm_row {brow} is outside the {n_rows} rows of the {bsplit} "
                "feature files"
            )
        key = (bsplit, brow)
        if key in used:
            raise DataError(
                f"{index_path}, lines {used[key]} and {line} both point at row {brow} of the {bsplit} "
                "feature files"
            )
        used[key] = line
        try:
            lbin = int(r["label_bin"])
        except ValueError:
            raise DataError(
                f"{index_path}, line {line}: label_bin {r['label_bin']!r} is not 0 or 1"
            ) from None
        if lbin != bin_labels[bsplit][brow]:
            raise DataError(
                f"{index_path}, line {line}: binary label {lbin} disagrees with row {brow} of the {bsplit} "
                f"feature files ({bin_labels[bsplit][brow]}); the index does not match these feature files"
            )
        if transcript_rows is not None and "transcript_row" in r:
            want = transcript_rows[bsplit]
            if brow < len(want) and str(want[brow]) != r["transcript_row"].strip():
                raise DataError(
                    f"{index_path}, line {line}: transcript_row {r['transcript_row']} but row {brow} of "
                    f"text_{bsplit}.csv is transcript {want[brow]}"
                )
        raw = r["label_cont"].strip()
        if raw == "":
            dropped[split] += 1
            dropped_src[bsplit] += 1
            continue
        try:
            label = float(raw)
        except ValueError:
            raise DataError(f"{index_path}, line {line}: label_cont {raw!r} is not a number") from None
        if not (math.isfinite(label) and LABEL_RANGE[0] <= label <= LABEL_RANGE[1]):
            raise DataError(f"{index_path}, line {line}: label_cont {label} is outside [-3, 3]")
        picked[split].append((bsplit, brow, label, r["utt_id"].strip()))

    splits: dict[str, MosiSplit] = {}
    for s in SPLITS:
        items = picked[s]
        if not items:
            raise DataError(f"{index_path}: the {s} split has no utterance with a continuous label")
        features = {}
        for m in modalities:
            features[m] = np.stack([feats[(m, b)][i] for b, i, _, _ in items]).astype(np.float32)
        labels = np.asarray([lab for _, _, lab, _ in items], dtype=np.float32)
        splits[s] = MosiSplit(features, labels, [u for _, _, _, u in items], [b for b, _, _, _ in items])
        total = len(items) + dropped[s]
        if total != STANDARD_SIZES[s]:
            log.warning("%s: the %s split has %d utterances, the standard split has %d",
                        index_path, s, total, STANDARD_SIZES[s])
    dims = {m: int(feats[(m, "dim")].shape[1]) for m in modalities}
    data = MosiFeatureData(splits=splits, dims=dims, dropped=dropped, root=root, dropped_by_source=dropped_src)
    log.info("MOSI features from %s: %s (dropped without continuous label: %s)", root, data.counts(), dropped)
    return data


def _read_transcript_rows(root: Path) -> dict[str, list[str]] | None:
    """First column of ``text_{train,test}.csv`` (the transcript row of each feature row), if present."""
    out = {}
    for bsplit in _BCLSTM_SPLITS:
        p = root / f"text_{bsplit}.csv"
        if not p.is_file():
            return None
        with open(p, newline="") as fh:
            out[bsplit] = [row[0].strip() for row in csv.reader(fh) if row]
    return out


def standardize(data: MosiFeatureData, eps: float = 1e-6) -> MosiFeatureData:
    """Z-score every feature with the mean and std of the train split (constant features become 0).

    Returns a new :class:`MosiFeatureData`; the statistics are kept in ``standardization``.
    """
    train = data.splits["train"]
    stats = {}
    for m in data.modalities:
        x = train.features[m].astype(np.float64)
        mean = x.mean(0)
        std = x.std(0)
        std = np.where(std < eps, 1.0, std)
        stats[m] = (mean.astype(np.float32), std.astype(np.float32))
    splits = {}
    for s, sp in data.splits.items():
        feats = {
            m: ((sp.features[m] - stats[m][0]) / stats[m][1]).astype(np.float32) for m in data.modalities
        }
        splits[s] = MosiSplit(feats, sp.labels, list(sp.ids), sp.source)
    return MosiFeatureData(splits, dict(data.dims), dict(data.dropped), data.root, stats,
                           dict(data.dropped_by_source))


# ----------------------------------------------------------------------------------------------------------
# Cross-Modal BERT files
# ----------------------------------------------------------------------------------------------------------


@dataclass
class MosiTextSplit:
    """One split of the transcripts: texts and continuous labels."""

    texts: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


#: file name of each split in the Cross-Modal BERT text folder
TSV_FILES = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}


def load_mosi_tsv(path: str | Path) -> MosiTextSplit:
    """Read one ``text<TAB>label`` file with a header line (the Cross-Modal BERT format)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"text file not found: {path}")
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = content.splitlines()
    if not lines:
        raise DataError(f"{path} is empty")
    header = [h.strip().lower() for h in lines[0].split("\t")]
    if header != ["text", "label"]:
        raise DataError(f"{path}: header should be 'text<TAB>label', got {lines[0]!r}")
    texts: list[str] = []
    labels: list[float] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise DataError(
                f"{path}, line {lineno}: expected 2 tab-separated fields (text, label), got {len(parts)}"
            )
        text, raw = parts
        if not text.strip():
            raise DataError(f"{path}, line {lineno}: empty text")
        try:
            label = float(raw)
        except ValueError:
            raise DataError(f"{path}, line {lineno}: label {raw!r} is not a number") from None
        if not (math.isfinite(label) and LABEL_RANGE[0] <= label <= LABEL_RANGE[1]):
            raise DataError(f"{path}, line {lineno}: label {label} is outside [-3, 3]")
        texts.append(text.strip())
        labels.append(label)
    if not texts:
        raise DataError(f"{path} has a header but no rows")
    return MosiTextSplit(texts, np.asarray(labels, dtype=np.float32))


def resolve_text_root(path: str | Path | None = None) -> Path:
    """The folder holding ``train.tsv``, ``dev.tsv`` and ``test.tsv``: ``path`` itself or ``path/cmu-mosi-text``;
    without ``path``, ``$DEQFUSION_DATA_DIR/cmu-mosi-text`` or the cache (the rule of :mod:`deqfusion.data.paths`)."""
    return resolve_dataset_folder(TEXT_FOLDER, list(TSV_FILES.values()), path, what="MOSI text")


def load_mosi_text(path: str | Path | None = None) -> dict[str, MosiTextSplit]:
    """Read ``train.tsv``, ``dev.tsv`` and ``test.tsv`` from a folder (or its ``cmu-mosi-text`` subfolder)."""
    root = resolve_text_root(path)
    out = {s: load_mosi_tsv(root / f) for s, f in TSV_FILES.items()}
    for s, sp in out.items():
        if len(sp) != STANDARD_SIZES[s]:
            log.warning("%s has %d rows; the standard %s split has %d", root / TSV_FILES[s], len(sp), s,
                        STANDARD_SIZES[s])
    return out


# numpy objects a pickled array may need; nothing else can be rebuilt from the audio pickle
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "list"),
    ("builtins", "tuple"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")


AUDIO_SPLIT_ORDER = ("train", "dev", "test")


def load_mosi_audio(
    path: str | Path, seq_len: int | None = 50, feat_dim: int | None = 5
) -> dict[str, np.ndarray]:
    """Read the Cross-Modal BERT audio pickle: a ``(train, valid, test)`` tuple of ``(n, seq_len, feat_dim)``.

    Only numpy arrays (and lists/tuples of them) are unpickled; anything else is refused. Returns
    ``{"train": ..., "dev": ..., "test": ...}`` as float32 arrays. ``seq_len``/``feat_dim`` of None accept any
    size (the same in all three splits).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"audio pickle not found: {path}")
    try:
        with open(path, "rb") as fh:
            obj = _ArrayUnpickler(io.BufferedReader(fh), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{path}: {exc}") from None
    except (EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as exc:
        raise DataError(f"{path} is not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, (tuple, list)) or len(obj) != 3:
        what = f"a {type(obj).__name__}"
        if isinstance(obj, (tuple, list)):
            what += f" of length {len(obj)}"
        raise DataError(f"{path} should hold a (train, valid, test) tuple of arrays, got {what}")
    out: dict[str, np.ndarray] = {}
    shape_ref = None
    for split, arr in zip(AUDIO_SPLIT_ORDER, obj, strict=True):
        try:
            a = np.asarray(arr, dtype=np.float32)
        except (ValueError, TypeError):
            raise DataError(f"{path}: the {split} entry is not a numeric array") from None
        if a.ndim != 3:
            raise DataError(
                f"{path}: the {split} array has shape {a.shape}; expected (n, positions, features)"
            )
        if seq_len is not None and a.shape[1] != seq_len:
            raise DataError(f"{path}: the {split} array has {a.shape[1]} positions, expected {seq_len}")
        if feat_dim is not None and a.shape[2] != feat_dim:
            raise DataError(
                f"{path}: the {split} array has {a.shape[2]} features per position, expected {feat_dim}"
            )
        if shape_ref is not None and a.shape[1:] != shape_ref:
            raise DataError(
                f"{path}: the {split} array has shape {a.shape}, the train array (n, {shape_ref[0]}, "
                f"{shape_ref[1]})"
            )
        shape_ref = a.shape[1:]
        if not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).reshape(len(a), -1).any(1).sum())
            raise DataError(f"{path}: the {split} array holds NaN or inf in {bad} utterance(s)")
        out[split] = a
    return out


def check_alignment(text: Mapping[str, MosiTextSplit], audio: Mapping[str, np.ndarray],
                    audio_path: str | Path = "audio pickle") -> None:
    """Fail unless every split has as many audio arrays as text rows (the files are aligned by row)."""
    for s in SPLITS:
        if s not in text or s not in audio:
            raise DataError(f"split {s!r} is missing from the text files or from {audio_path}")
        if len(text[s]) != len(audio[s]):
            raise DataError(
                f"{audio_path}: the {s} split has {len(audio[s])} audio arrays but the text file has "
                f"{len(text[s])} rows; audio and text must be the same utterances in the same order"
            )


def resplit_by_source(data: MosiFeatureData, dev_fraction: float = 0.15, seed: int = 0) -> MosiFeatureData:
    """The leak-free protocol: test on the utterances of the bc-LSTM *test* split, train on the others.

    The bc-LSTM feature extractors were fitted on the utterances of their own train split, so on the standard
    split most dev and test utterances carry features fitted to their labels. Here every utterance whose
    features come from the bc-LSTM train split is used for training or selection, and the test split is
    exactly the bc-LSTM test split (different speakers, features never fitted to them). The dev part is a
    ``dev_fraction`` of the training *videos* (speakers), chosen with ``seed`` (the same for every training
    seed), so selection is speaker-independent too. Continuous labels are kept; ``dropped`` counts the
    utterances without one by new split (``"train"`` covers train and dev, whose videos are chosen later).
    """
    if not 0 < dev_fraction < 1:
        raise ValueError(f"dev_fraction must lie in (0, 1), got {dev_fraction}")
    parts = [data.splits[s] for s in SPLITS]
    if any(p.source is None for p in parts):
        raise ValueError("the data carries no bc-LSTM source split; load it with load_mosi_features")
    feats = {m: np.concatenate([p.features[m] for p in parts]) for m in data.modalities}
    labels = np.concatenate([p.labels for p in parts])
    ids = [u for p in parts for u in p.ids]
    source = np.array([s for p in parts for s in p.source])
    videos = np.array([u.rsplit("_", 1)[0] for u in ids])
    train_videos = sorted(set(videos[source == "train"]))
    rng = np.random.default_rng(seed)
    n_dev = max(1, int(round(dev_fraction * len(train_videos))))
    dev_videos = set(rng.choice(train_videos, size=n_dev, replace=False).tolist())
    in_dev = np.array([v in dev_videos for v in videos]) & (source == "train")
    masks = {"train": (source == "train") & ~in_dev, "dev": in_dev, "test": source == "test"}
    whole = MosiSplit(feats, labels, ids, source.tolist())
    splits = {s: whole.select_rows(k) for s, k in masks.items()}
    by_src = dict(data.dropped_by_source)
    dropped = {"train": by_src.get("train", 0), "dev": 0, "test": by_src.get("test", 0)}
    return MosiFeatureData(splits, dict(data.dims), dropped, data.root, dict(data.standardization), by_src)
