"""Kill-and-resume at the command level: a run interrupted mid-training (KeyboardInterrupt, what Ctrl-C or SIGINT
raises) and continued with ``--resume`` ends with the same metrics as an uninterrupted run with the same seed.

(The trainer itself and ``deqfusion mmimdb`` have their own interrupted-resume tests in tests/training/test_trainer.py,
tests/training/test_objective.py and tests/commands/test_mmimdb.py.)
"""

import csv
import json

import pytest

from deqfusion.cli import main


class Killer:
    """Wraps a function; raises KeyboardInterrupt on the ``at``-th call made in training mode."""

    def __init__(self, fn, at, training_of):
        self.fn, self.at, self.training_of, self.calls = fn, at, training_of, 0

    def __call__(self, *args, **kwargs):
        if self.training_of(*args):
            self.calls += 1
            if self.calls == self.at:
                raise KeyboardInterrupt
        return self.fn(*args, **kwargs)


def _json(path):
    return json.loads(path.read_text())


def test_omics_kill_and_resume(shared_data_dir, tmp_path, monkeypatch):
    import deqfusion.experiments.omics as omics

    # checkpoints every 3 epochs (the command's default is every 100, too long for a test)
    monkeypatch.setattr(omics, "CHECKPOINT_EVERY", 3)
    argv = ["omics", "--dataset", "rosmap", "--data-dir", str(shared_data_dir / "rosmap"), "--epochs", "8",
            "--eval-every", "2", "--hidden", "16", "--threads", "1", "--no-progress", "--seeds", "3",
            "--fusion", "deq:f_max_iter=8,b_mode=implicit,b_max_iter=8"]  # Hutchinson probes + dropout: RNG
    assert main(argv + ["--out", str(tmp_path / "straight")]) == 0

    import deqfusion.models.omics as omics_model

    # the command's loss comes from omics_objective, which calls models.omics.omics_loss
    killer = Killer(omics_model.omics_loss, 8, lambda out, y: out.info.jac_loss.requires_grad)  # in epoch 8
    monkeypatch.setattr(omics_model, "omics_loss", killer)
    assert main(argv + ["--out", str(tmp_path / "killed")]) == 130  # "interrupted"
    [ck] = list((tmp_path / "killed").rglob("checkpoint.pt"))
    assert not list((tmp_path / "killed").rglob("result.json"))
    monkeypatch.setattr(omics_model, "omics_loss", killer.fn)
    assert main(argv + ["--out", str(tmp_path / "killed"), "--resume"]) == 0

    [a] = list((tmp_path / "straight").rglob("result.json"))
    [b] = list((tmp_path / "killed").rglob("result.json"))
    ra, rb = _json(a), _json(b)
    assert rb["test"] == pytest.approx(ra["test"], rel=1e-6, abs=1e-9)
    assert rb["val"] == pytest.approx(ra["val"], rel=1e-6, abs=1e-9)
    assert rb["best_epoch"] == ra["best_epoch"] and rb["epochs_run"] == ra["epochs_run"] == 8
    assert (a.parent / "history.csv").read_text() == (b.parent / "history.csv").read_text()


def test_mosi_features_kill_and_resume(shared_data_dir, tmp_path, monkeypatch):
    import deqfusion.experiments.mosi_objective as mr

    argv = ["mosi-features", "--data-dir", str(shared_data_dir), "--seeds", "2", "--epochs", "2", "--hidden", "16",
            "--fusion", "deq", "--f-max-iter", "6", "--b-max-iter", "6", "--threads", "1", "--batch-size", "256"]
    assert main(argv + ["--out", str(tmp_path / "straight")]) == 0

    original = mr.feature_step_fn

    def dying_step_fn(*a, **k):
        return Killer(original(*a, **k), 9, lambda model, batch, training: training)  # epoch 2 of 2 (6 batches each)

    monkeypatch.setattr(mr, "feature_step_fn", dying_step_fn)
    assert main(argv + ["--out", str(tmp_path / "killed")]) == 130
    monkeypatch.setattr(mr, "feature_step_fn", original)
    assert main(argv + ["--out", str(tmp_path / "killed"), "--resume"]) == 0

    [a] = list((tmp_path / "straight").rglob("result.json"))
    [b] = list((tmp_path / "killed").rglob("result.json"))
    ra, rb = _json(a), _json(b)
    def losses(path):
        with (path.parent / "history.csv").open() as f:
            return [float(r["train_loss"]) for r in csv.DictReader(f)]

    assert losses(b) == pytest.approx(losses(a), rel=1e-6)
    assert rb["test"] == pytest.approx(ra["test"], rel=1e-6, abs=1e-9)
    assert rb["test_clean"] == pytest.approx(ra["test_clean"], rel=1e-6, abs=1e-9)


def test_missing_kill_and_resume(shared_data_dir, tmp_path, monkeypatch):
    import deqfusion.experiments.omics as omics

    monkeypatch.setattr(omics, "CHECKPOINT_EVERY", 3)
    argv = ["missing", "--data-dir", str(shared_data_dir), "--seeds", "0", "--methods", "deq-dropout",
            "--epochs", "6", "--eval-every", "3", "--hidden", "16", "--no-progress"]  # modality drop-out: RNG
    assert main(argv + ["--out", str(tmp_path / "straight")]) == 0
    import deqfusion.models.omics as omics_model

    killer = Killer(omics_model.omics_loss, 5, lambda out, y: out.info.jac_loss.requires_grad)
    monkeypatch.setattr(omics_model, "omics_loss", killer)
    assert main(argv + ["--out", str(tmp_path / "killed")]) == 130
    monkeypatch.setattr(omics_model, "omics_loss", killer.fn)
    assert main(argv + ["--out", str(tmp_path / "killed"), "--resume"]) == 0
    ra = _json(tmp_path / "straight" / "deq-dropout" / "seed0" / "result.json")
    rb = _json(tmp_path / "killed" / "deq-dropout" / "seed0" / "result.json")
    assert rb["test"] == pytest.approx(ra["test"], rel=1e-6, abs=1e-9)
    assert rb["val_all"] == pytest.approx(ra["val_all"], rel=1e-6, abs=1e-9)
