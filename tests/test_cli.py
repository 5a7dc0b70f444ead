"""The one error path of the command line: user and data errors, failed runs and unusable paths end as one line
``deqfusion <command>: error: ...`` with exit status 2 and no traceback; a bug keeps its traceback."""

import os
import re
import subprocess
import sys

import pytest
import torch

from deqfusion import cli
from deqfusion.commands import missing
from deqfusion.training.checkpoint import load_checkpoint, save_checkpoint
from deqfusion.training.guard import TrainingDiverged

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _expect_error(capsys, argv, pattern, status=2):
    capsys.readouterr()
    assert cli.main(argv) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"deqfusion {argv[0]}: error: "), err[0]
    assert re.search(pattern, err[0]), err[0]


def test_out_that_cannot_be_an_output_folder(shared_data_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    base = ["missing", "--data-dir", str(shared_data_dir), "--epochs", "1"]
    _expect_error(capsys, base + ["--out", str(tmp_path / "file")], r"--out .*file exists and is not a folder")
    _expect_error(capsys, base + ["--out", str(tmp_path / "file" / "run")],
                  r"--out .*file/run cannot be created: .*file is a file, not a folder")
    _expect_error(capsys, ["plot", "convergence", "--run", "r", "--out", str(tmp_path)],
                  r"--out .* is a folder; pass a file path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_subprocess_exit_status_and_one_line(shared_data_dir, tmp_path):
    (tmp_path / "file").write_text("x")
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "src"), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "deqfusion", "omics", "--data-dir", str(shared_data_dir / "rosmap"),
                           "--out", str(tmp_path / "file"), "--no-download"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [f"deqfusion omics: error: --out {tmp_path / 'file'} exists and is not a folder; pass a folder "
                     "path"]


@pytest.fixture
def interrupted_run(shared_data_dir, tmp_path):
    """A finished one-seed ``missing`` run whose result.json is removed: --resume then reads its checkpoint."""
    out = tmp_path / "run"
    argv = ["missing", "--data-dir", str(shared_data_dir), "--out", str(out), "--seeds", "0", "--methods",
            "concat-zero", "--epochs", "2", "--eval-every", "1", "--hidden", "8", "--no-progress"]
    assert cli.main(argv) == 0
    (out / "concat-zero" / "seed0" / "result.json").unlink()
    return argv + ["--resume"], out / "concat-zero" / "seed0" / "checkpoint.pt"


def test_resume_from_a_checkpoint_with_a_tensor_of_the_wrong_shape(interrupted_run, capsys):
    argv, ckpt = interrupted_run
    state = load_checkpoint(ckpt)
    name, value = next(iter(state["model"].items()))
    state["model"][name] = torch.zeros(value.shape[0] + 1, *value.shape[1:])
    save_checkpoint(ckpt, state)
    _expect_error(capsys, argv, rf"checkpoint.pt: its model state does not fit \('{re.escape(name)}' has shape")


def test_resume_from_a_checkpoint_missing_an_entry(interrupted_run, capsys):
    argv, ckpt = interrupted_run
    state = load_checkpoint(ckpt)
    del state["optimizer"]
    save_checkpoint(ckpt, state)
    _expect_error(capsys, argv, r"checkpoint.pt is not a checkpoint of this trainer: it has no 'optimizer' entry")
    state = load_checkpoint(ckpt)
    state["optimizer"] = {"state": {}, "param_groups": []}
    save_checkpoint(ckpt, state)
    _expect_error(capsys, argv, r"checkpoint.pt: its optimizer state does not fit")


@pytest.mark.parametrize("exc, pattern, status", [
    (TrainingDiverged("deq seed 0: 25 steps in a row skipped\nby the guard"),
     r"error: deq seed 0: 25 steps in a row skipped by the guard \(lower the learning rate or raise the "
     r"Jacobian regularisation, or try another seed; see the divergence guard in docs/robustness.md\)$", 3),
    (PermissionError(13, "Permission denied", "/some/file.json"),
     r"error: /some/file.json: Permission denied; check the paths given on the command line", 2),
])
def test_failed_runs_and_unusable_files_are_one_line(shared_data_dir, tmp_path, capsys, monkeypatch, exc, pattern,
                                                     status):
    def run(args):
        raise exc

    monkeypatch.setattr(missing, "run", run)
    _expect_error(capsys, ["missing", "--data-dir", str(shared_data_dir), "--out", str(tmp_path / "o")], pattern,
                  status)


def test_a_bug_keeps_its_traceback(shared_data_dir, tmp_path, monkeypatch):
    def run(args):
        raise IndexError("a bug")

    monkeypatch.setattr(missing, "run", run)
    with pytest.raises(IndexError, match="a bug"):
        cli.main(["missing", "--data-dir", str(shared_data_dir), "--out", str(tmp_path / "o")])
    monkeypatch.setattr(missing, "run", lambda args: (_ for _ in ()).throw(OSError("no file named")))
    with pytest.raises(OSError):  # an OSError that names no file is not a path problem
        cli.main(["missing", "--data-dir", str(shared_data_dir), "--out", str(tmp_path / "o")])
