"""Bad input everywhere: every command checks paths, shapes, NaN, label ranges, fusion names and modality subsets
before training and exits with status 2 and one line ``deqfusion <command>: error: ...`` (no traceback). Also: a
checkpoint holding a pickled object and a tampered download are refused, and nothing is written outside the output
folder."""

import os
import re
import shutil

import pytest
import torch

from deqfusion.cli import main
from deqfusion.data.mixomics import FOLDER
from deqfusion.data.mmimdb import write_mmimdb_file
from deqfusion.training.checkpoint import CheckpointError, load_checkpoint

from ..data.mmimdb_files import make_arrays


def _copy(src, dst):
    shutil.copytree(src, dst)
    for root, _, files in os.walk(dst):
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    return dst


def _set_cell(path, line, col, value):
    lines = path.read_text().splitlines()
    cells = lines[line].split(",")
    cells[col] = value
    lines[line] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def _expect_error(capsys, argv, pattern):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no message"
    assert "Traceback" not in "\n".join(err)
    assert err[-1].startswith(f"deqfusion {argv[0]}: error: "), err[-1]
    assert re.search(pattern, err[-1]), err[-1]


# ------------------------------------------------------------------------------------------------------ omics
@pytest.fixture(scope="module")
def bad_rosmap(shared_data_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("rosmap")
    out = {}
    out["nan"] = _copy(shared_data_dir / "rosmap", base / "nan")
    _set_cell(out["nan"] / "1_tr.csv", 3, 0, "nan")
    out["label"] = _copy(shared_data_dir / "rosmap", base / "label")
    lines = (out["label"] / "labels_tr.csv").read_text().splitlines()
    lines[5] = "7.0"
    (out["label"] / "labels_tr.csv").write_text("\n".join(lines) + "\n")
    out["rows"] = _copy(shared_data_dir / "rosmap", base / "rows")
    lines = (out["rows"] / "2_te.csv").read_text().splitlines()
    (out["rows"] / "2_te.csv").write_text("\n".join(lines[:-1]) + "\n")
    out["cols"] = _copy(shared_data_dir / "rosmap", base / "cols")
    lines = (out["cols"] / "3_te.csv").read_text().splitlines()
    (out["cols"] / "3_te.csv").write_text("\n".join(ln.rsplit(",", 1)[0] for ln in lines) + "\n")
    return out


@pytest.mark.parametrize("case, extra, pattern", [
    ("nodir", [], "data folder not found"),
    ("nan", ["--no-verify"], r"1_tr.csv: 1 NaN/inf value"),
    ("label", ["--no-verify"], r"labels_tr.csv, line 6: label 7 is out of range for 2 classes"),
    ("rows", ["--no-verify"], r"2_te.csv: 105 samples, but labels_te.csv has 106 labels"),
    ("cols", ["--no-verify"], r"3_te.csv.*(199|200)"),
    ("nan", [], "SHA-256 mismatch"),  # a modified copy is caught by its hash unless --no-verify
    ("ok", ["--fusion", "bogus"], "unknown fusion 'bogus'"),
    ("ok", ["--modalities", "2"], "at least 2 modalities"),
    ("ok", ["--modalities", "1", "9"], r"modalities 1\.\.3, got \[1, 9\]"),
    ("ok", ["--val-fraction", "1.5"], r"--val-fraction must lie in \(0, 1\)"),
])
def test_omics(bad_rosmap, shared_data_dir, tmp_path, capsys, case, extra, pattern):
    folder = {"nodir": tmp_path / "nowhere", "ok": shared_data_dir / "rosmap"}.get(case) or bad_rosmap[case]
    _expect_error(capsys, ["omics", "--dataset", "rosmap", "--data-dir", str(folder), "--no-download",
                           "--out", str(tmp_path / "out"), "--epochs", "1", "--no-progress", *extra], pattern)


def test_omics_tampered_download_is_refused(bad_rosmap, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DEQFUSION_DATA_DIR", raising=False)
    cache = tmp_path / "cache"
    _expect_error(capsys, ["omics", "--dataset", "rosmap", "--source", str(bad_rosmap["nan"]), "--cache-dir",
                           str(cache), "--out", str(tmp_path / "out"), "--epochs", "1", "--no-progress"],
                  r"1_tr.csv: SHA-256 mismatch .* refusing to use it")
    assert not list(cache.rglob("1_tr.csv"))  # the tampered file never lands in the cache under its name


# ------------------------------------------------------------------------------------------------------- MOSI
@pytest.fixture(scope="module")
def nan_mosi(shared_data_dir, tmp_path_factory):
    d = _copy(shared_data_dir / "cmu-mosi-bclstm", tmp_path_factory.mktemp("mosi") / "cmu-mosi-bclstm")
    _set_cell(d / "audio" / "audio_train0.csv", 2, 3, '"nan"')
    return d


@pytest.mark.parametrize("extra, pattern", [
    (["--fusion", "bogus"], r"--fusion 'bogus': unknown fusion 'bogus'"),
    (["--subsets", ""], "empty modality subset"),
    (["--subsets", "T+X"], "unknown modality 'X'"),
    (["--subsets", "T+T"], "listed twice"),
    (["--batch-size", "0"], "must be >= 1"),
])
def test_mosi_features_options(shared_data_dir, tmp_path, capsys, extra, pattern):
    _expect_error(capsys, ["mosi-features", "--data-dir", str(shared_data_dir), "--out", str(tmp_path / "o"),
                           "--epochs", "1", *extra], pattern)
    assert not (tmp_path / "o").exists()  # checked before anything is written


def test_mosi_features_data(nan_mosi, tmp_path, capsys):
    _expect_error(capsys, ["mosi-features", "--data-dir", str(nan_mosi), "--out", str(tmp_path / "o")],
                  r"audio_train0.csv: row 3 holds NaN or inf")
    _expect_error(capsys, ["mosi-features", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")],
                  "not found")


# ----------------------------------------------------------------------------------------------------- MM-IMDB
def test_mmimdb(tmp_path, capsys):
    text, image, genres = make_arrays(120)
    text[5, 3] = float("nan")
    nan_file = write_mmimdb_file(tmp_path / "nan.h5", text, image, genres)
    _expect_error(capsys, ["mmimdb", "--data", str(nan_file), "--out", str(tmp_path / "o"), "--max-epochs", "1"],
                  r"'features' has NaN or inf values \(first in row 5\)")
    text, image, genres = make_arrays(120)
    short = write_mmimdb_file(tmp_path / "short.h5", text[:, :50], image, genres)
    _expect_error(capsys, ["mmimdb", "--data", str(short), "--out", str(tmp_path / "o"), "--max-epochs", "1"],
                  "300")
    _expect_error(capsys, ["mmimdb", "--data", str(tmp_path / "none.h5"), "--out", str(tmp_path / "o")],
                  "not found")
    ok = write_mmimdb_file(tmp_path / "ok.h5", *make_arrays(120))
    _expect_error(capsys, ["mmimdb", "--data", str(ok), "--out", str(tmp_path / "o"), "--fusion", "bogus"],
                  "unknown fusion 'bogus'")


# ----------------------------------------------------------------------------------------------------- missing
@pytest.mark.parametrize("extra, pattern", [
    (["--methods", "bogus"], r"unknown method\(s\) \['bogus'\]"),
    (["--methods", "deq-2mod", "deq-2mod"], "named twice"),
    (["--modality-dropout", "1.0"], r"--modality-dropout must lie in \[0, 1\)"),
    (["--hidden", "10"], "multiple of 4"),
    (["--seeds", "1", "1"], "repeats a seed"),
])
def test_missing_options(shared_data_dir, tmp_path, capsys, extra, pattern):
    _expect_error(capsys, ["missing", "--data-dir", str(shared_data_dir), "--out", str(tmp_path / "o"), *extra],
                  pattern)
    assert not (tmp_path / "o").exists()


def test_missing_data(shared_data_dir, tmp_path, capsys):
    d = _copy(shared_data_dir / FOLDER, tmp_path / FOLDER)
    _set_cell(d / "train_protein.csv", 4, 2, "NaN")
    _expect_error(capsys, ["missing", "--data-dir", str(d), "--out", str(tmp_path / "o")],
                  r"train_protein.csv, line 5: NaN or inf value")
    (d / "test_mrna.csv").unlink()  # not an extra missing modality: only the protein is absent by protocol
    _expect_error(capsys, ["missing", "--data-dir", str(d), "--out", str(tmp_path / "o")],
                  r"incomplete mixOmics TCGA breast folder: missing test_mrna.csv")
    (d / "train_protein.csv").unlink()
    _expect_error(capsys, ["missing", "--data-dir", str(d), "--out", str(tmp_path / "o")],
                  r"incomplete mixOmics TCGA breast folder: missing train_protein.csv, test_mrna.csv")
    _expect_error(capsys, ["missing", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")],
                  "data folder not found")


# --------------------------------------------------------------------------------------- safe loading / writing
class _Evil:
    """Unpickling this would run code (create a file)."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_checkpoint_with_a_pickled_object_is_refused(tmp_path):
    _Evil.marker = tmp_path / "PWNED"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a plain state-dict checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not _Evil.marker.exists()


def test_command_refuses_a_pickled_checkpoint_and_writes_only_into_its_output_folder(
        shared_data_dir, tmp_path, capsys, monkeypatch):
    cwd, home, out = tmp_path / "cwd", tmp_path / "home", tmp_path / "out"
    cwd.mkdir()
    home.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    argv = ["missing", "--data-dir", str(shared_data_dir), "--out", str(out), "--seeds", "0", "--methods",
            "concat-zero", "--epochs", "2", "--eval-every", "1", "--hidden", "8", "--no-progress"]
    assert main(argv) == 0
    # nothing outside --out: the working folder, HOME and the rest of tmp_path are untouched
    assert not list(cwd.iterdir()) and not list(home.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "home", "out"]
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # no temporary files left behind

    run_dir = out / "concat-zero" / "seed0"
    (run_dir / "result.json").unlink()
    _Evil.marker = tmp_path / "PWNED"
    torch.save({"model": _Evil()}, run_dir / "checkpoint.pt")
    _expect_error(capsys, argv + ["--resume"], "refusing to load .*checkpoint.pt: it is not a plain state-dict")
    assert not _Evil.marker.exists()
