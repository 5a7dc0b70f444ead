"""Data faults on copies of the real files: every broken copy ends with exit status 2 and one line naming the file
(no traceback), before anything is written; the cases that once gave a silent wrong result are here too."""

import os

import pytest

from .conftest import copy_folder

MIX = "tcga-breast-mixomics"


def _lines(path):
    return path.read_text().splitlines()


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")


def _set_cell(path, line, col, value):
    lines = _lines(path)
    cells = lines[line].split(",")
    cells[col] = value
    lines[line] = ",".join(cells)
    _write(path, lines)


# ----------------------------------------------------------------------------------------- omics (MOGONET files)
def _drop_last_row(d):
    _write(d / "2_te.csv", _lines(d / "2_te.csv")[:-1])


def _drop_last_column(d):
    _write(d / "3_tr.csv", [ln.rsplit(",", 1)[0] for ln in _lines(d / "3_tr.csv")])


def _label(value):
    def apply(d):
        lines = _lines(d / "labels_tr.csv")
        lines[4] = value
        _write(d / "labels_tr.csv", lines)
    return apply


ROSMAP_FAULTS = {
    "a modality file deleted": (lambda d: (d / "2_tr.csv").unlink(), r"incomplete rosmap dataset folder: missing "
                                                                     r"2_tr.csv"),
    "the labels deleted": (lambda d: (d / "labels_te.csv").unlink(), r"missing labels_te.csv"),
    "an empty modality file": (lambda d: (d / "1_tr.csv").write_text(""), r"1_tr.csv"),
    "a row missing": (_drop_last_row, r"2_te.csv: 105 samples, but labels_te.csv has 106 labels"),
    "a column missing": (_drop_last_column, r"3_tr.csv"),
    "a NaN": (lambda d: _set_cell(d / "1_tr.csv", 3, 0, "nan"), r"1_tr.csv: 1 NaN/inf value"),
    "an inf": (lambda d: _set_cell(d / "1_te.csv", 2, 5, "inf"), r"1_te.csv: 1 NaN/inf value"),
    "a word in a number column": (lambda d: _set_cell(d / "2_tr.csv", 7, 1, "abc"), r"2_tr.csv"),
    "a label out of range": (_label("7.0"), r"labels_tr.csv, line 5: label 7 is out of range for 2 classes"),
    "a fractional label": (_label("0.5"), r"labels_tr.csv"),
    "a negative label": (_label("-1"), r"labels_tr.csv"),
    "binary garbage": (lambda d: (d / "3_te.csv").write_bytes(bytes(range(256)) * 4), r"3_te.csv"),
}


@pytest.mark.parametrize("fault", sorted(ROSMAP_FAULTS))
def test_omics_data_faults(shared_data_dir, tmp_path, fails, fault):
    make, pattern = ROSMAP_FAULTS[fault]
    d = copy_folder(shared_data_dir / "rosmap", tmp_path / "rosmap")
    make(d)
    fails(["omics", "--dataset", "rosmap", "--data-dir", d, "--no-download", "--no-verify", "--out",
           tmp_path / "o", "--epochs", "1", "--no-progress"], pattern)
    assert not (tmp_path / "o").exists()


def test_omics_another_datasets_folder_is_refused(shared_data_dir, tmp_path, fails):
    for extra in ([], ["--no-verify"]):
        fails(["omics", "--dataset", "lgg", "--data-dir", shared_data_dir / "rosmap", "--no-download", *extra,
               "--out", tmp_path / "o", "--epochs", "1"], r"does not hold the lgg dataset")
    assert not (tmp_path / "o").exists()


def test_omics_incomplete_folder_under_the_data_variable_is_an_error_not_a_download(
        shared_data_dir, tmp_path, fails, monkeypatch):
    (tmp_path / "data" / "rosmap").mkdir(parents=True)
    for f in ("1_tr.csv", "1_te.csv"):
        (tmp_path / "data" / "rosmap" / f).write_bytes((shared_data_dir / "rosmap" / f).read_bytes())
    monkeypatch.setenv("DEQFUSION_DATA_DIR", str(tmp_path / "data"))
    fails(["omics", "--out", tmp_path / "o", "--epochs", "1", "--cache-dir", tmp_path / "cache"],
          r"\(DEQFUSION_DATA_DIR\) is an incomplete rosmap dataset folder: missing 2_tr.csv")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "o").exists()


def test_omics_data_dir_that_is_a_file_or_unreadable(shared_data_dir, tmp_path, fails):
    (tmp_path / "file").write_text("x")
    fails(["omics", "--data-dir", tmp_path / "file", "--no-download", "--out", tmp_path / "o"], r"file")
    if os.geteuid() != 0:  # root reads anything
        d = copy_folder(shared_data_dir / "rosmap", tmp_path / "rosmap")
        (d / "1_tr.csv").chmod(0)
        fails(["omics", "--data-dir", d, "--no-download", "--no-verify", "--out", tmp_path / "o", "--epochs", "1"],
              r"1_tr.csv")


# ----------------------------------------------------------------------------------- missing (mixOmics files)
def _misspell(d):
    lines = _lines(d / "train_subtype.csv")
    lines[1] = lines[1].replace("Basal", "Basall")
    _write(d / "train_subtype.csv", lines)


def _unknown_test_label(d):
    lines = _lines(d / "test_subtype.csv")
    lines[3] = "Normal"
    _write(d / "test_subtype.csv", lines)


MIX_FAULTS = {
    "a misspelt training label": (_misspell, r"train_subtype.csv, line 2: label 'Basall' is not one of the "
                                             r"declared classes \['Basal', 'Her2', 'LumA'\]"),
    "an unknown test label": (_unknown_test_label, r"test_subtype.csv.*'Normal'"),
    "a test modality deleted": (lambda d: (d / "test_mrna.csv").unlink(), r"incomplete mixOmics TCGA breast "
                                                                           r"folder: missing test_mrna.csv"),
    "the training protein deleted": (lambda d: (d / "train_protein.csv").unlink(), r"missing train_protein.csv"),
    "a NaN": (lambda d: _set_cell(d / "train_protein.csv", 4, 2, "NaN"), r"train_protein.csv, line 5: NaN"),
    "a row missing": (lambda d: _write(d / "train_mirna.csv", _lines(d / "train_mirna.csv")[:-1]),
                      r"train_mirna.csv"),
    "an empty label file": (lambda d: (d / "train_subtype.csv").write_text(""), r"train_subtype.csv"),
}


@pytest.mark.parametrize("fault", sorted(MIX_FAULTS))
def test_missing_data_faults(shared_data_dir, tmp_path, fails, fault):
    make, pattern = MIX_FAULTS[fault]
    d = copy_folder(shared_data_dir / MIX, tmp_path / MIX)
    make(d)
    fails(["missing", "--data-dir", tmp_path, "--out", tmp_path / "o", "--epochs", "1"], pattern)
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------- mosi-features
MOSI_FAULTS = {
    "a NaN": (lambda d: _set_cell(d / "audio" / "audio_train0.csv", 2, 3, '"nan"'), r"audio_train0.csv: row 3"),
    "a modality file deleted": (lambda d: (d / "video" / "video_test0.csv").unlink(), r"video_test0.csv"),
    "a row missing": (lambda d: _write(d / "text" / "text_train0.csv", _lines(d / "text" / "text_train0.csv")[:-1]),
                      r"text_train0.csv"),
    "the index deleted": (lambda d: (d / "utterance_index.csv").unlink(), r"utterance_index.csv"),
}


@pytest.mark.parametrize("fault", sorted(MOSI_FAULTS))
def test_mosi_features_data_faults(shared_data_dir, tmp_path, fails, fault):
    make, pattern = MOSI_FAULTS[fault]
    d = copy_folder(shared_data_dir / "cmu-mosi-bclstm", tmp_path / "cmu-mosi-bclstm")
    make(d)
    fails(["mosi-features", "--data-dir", tmp_path, "--out", tmp_path / "o", "--epochs", "1"], pattern)
    assert not (tmp_path / "o").exists()
