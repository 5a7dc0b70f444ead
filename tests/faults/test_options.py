"""Bad options are refused up front: exit status 2, one line naming the option and what it must be, and the
output folder is not created (nothing is written before the options are checked)."""

import pytest
import torch

from deqfusion import cli

COMMON = [
    (["--epochs", "0"], r"--epochs must be >= 1, got 0"),
    (["--lr", "-0.1"], r"--lr must be finite and > 0, got -0.1"),
    (["--lr", "nan"], r"--lr must be finite and > 0, got nan"),
    (["--dropout", "2"], r"--dropout must lie in \[0, 1\), got 2.0"),
    (["--weight-decay", "-1"], r"--weight-decay must be finite and >= 0, got -1.0"),
    (["--seeds", "0", "--threads", "-1"], r"--threads must be >= 0, got -1"),
]


@pytest.mark.parametrize("extra, pattern", COMMON + [
    (["--select", "nosuch"], r"--select 'nosuch' is not a validation score; choose one of ce, loss, acc"),
    (["--eval-every", "0"], r"--eval-every must be >= 1"),
    (["--val-fraction", "1"], r"--val-fraction must lie in \(0, 1\), got 1.0"),
])
def test_omics(shared_data_dir, tmp_path, fails, extra, pattern):
    fails(["omics", "--data-dir", shared_data_dir / "rosmap", "--no-download", "--out", tmp_path / "o",
           "--no-progress", *extra], pattern)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra, pattern", COMMON + [
    (["--select", "nosuch"], r"--select 'nosuch' is not a dev score; choose one of loss, mae, corr"),
    (["--batch-size", "0"], r"--batch-size must be >= 1, got 0"),
    (["--input-dropout", "-0.5"], r"--input-dropout must lie in \[0, 1\)"),
])
def test_mosi_features(shared_data_dir, tmp_path, fails, extra, pattern):
    fails(["mosi-features", "--data-dir", shared_data_dir, "--out", tmp_path / "o", *extra], pattern)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra, pattern", COMMON + [
    (["--modality-dropout", "1.5"], r"--modality-dropout must lie in \[0, 1\)"),
])
def test_missing(shared_data_dir, tmp_path, fails, extra, pattern):
    fails(["missing", "--data-dir", shared_data_dir, "--out", tmp_path / "o", *extra], pattern)
    assert not (tmp_path / "o").exists()


def test_mmimdb_and_bench(tmp_path, fails):
    fails(["mmimdb", "--data", tmp_path / "x.h5", "--out", tmp_path / "o", "--max-epochs", "0"],
          r"--max-epochs must be >= 1")
    fails(["bench", "--out", tmp_path / "o", "--batch", "8", "0"], r"--batch must be >= 1, got 0")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["omics", "missing", "mosi-features"])
def test_out_naming_a_file_or_an_impossible_path(shared_data_dir, tmp_path, fails, command):
    (tmp_path / "file").write_text("x")
    data = shared_data_dir / "rosmap" if command == "omics" else shared_data_dir
    base = [command, "--data-dir", data, "--epochs", "1"]
    fails(base + ["--out", tmp_path / "file"], r"--out .*file exists and is not a folder")
    fails(base + ["--out", tmp_path / "file" / "run"], r"--out .*file/run cannot be created: .*file is a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_data_dependent_selection_score_is_refused_before_training_and_leaves_nothing(
        shared_data_dir, tmp_path, fails):
    # ROSMAP has two classes: the weighted F1 is a score of multi-class data only
    fails(["omics", "--data-dir", shared_data_dir / "rosmap", "--no-download", "--out", tmp_path / "o",
           "--select", "f1_weighted", "--epochs", "2", "--no-progress", "--threads", "1"],
          r"selection score 'f1_weighted' is not among the validation scores .* choose one of acc, auc, ce")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv", [
    ["omics", "--epochs", "x", "--out", "o"],
    ["omics", "--dataset", "nosuch", "--out", "o"],
    ["mosi-features", "--loss", "l3", "--out", "o"],
    ["missing"],  # --out is required
])
def test_malformed_invocations_end_in_argparse_usage_and_status_2(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err) and err[-1].startswith(f"deqfusion {argv[0]}: error: ")
    assert not list(tmp_path.iterdir())


def test_a_device_that_is_not_there(shared_data_dir, tmp_path, fails):
    base = ["mosi-features", "--data-dir", shared_data_dir, "--out", tmp_path / "o", "--epochs", "1", "--subsets",
            "T"]
    fails(base + ["--device", "nosuch"], r"--device 'nosuch' is not a torch device; pass cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        fails(base + ["--device", "cuda"], r"--device cuda was requested but CUDA is not available; pass --device cpu")
    else:
        fails(base + ["--device", f"cuda:{torch.cuda.device_count()}"], r"CUDA device\(s\) are visible")
    assert not (tmp_path / "o").exists()
