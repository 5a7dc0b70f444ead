"""A resumed run is the run it continues: a resume with other numerics (threads, model code) or over files whose
settings cannot be checked is refused in one line and writes nothing; a checkpoint that does not fit is refused."""

import hashlib
import json

import pytest
import torch

from deqfusion import cli
from deqfusion.experiments import runner
from deqfusion.training.checkpoint import code_hash, load_checkpoint, model_code_version, save_checkpoint


def _tree(folder):
    """Every file under ``folder`` with the hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def omics_run(shared_data_dir, tmp_path):
    out = tmp_path / "run"
    argv = ["omics", "--data-dir", str(shared_data_dir / "rosmap"), "--no-download", "--out", str(out),
            "--epochs", "2", "--eval-every", "1", "--hidden", "8", "--fusion", "concat", "--no-progress",
            "--threads", "1"]
    assert cli.main(argv) == 0
    return argv, out


def _with(argv, option, value):
    argv = list(argv)
    argv[argv.index(option) + 1] = value
    return argv


def test_resume_with_other_threads_is_refused_and_writes_nothing(omics_run, fails):
    argv, out = omics_run
    before = _tree(out)
    fails(_with(argv, "--threads", "2") + ["--resume"], r"config.json was written with other settings "
                                                         r"\(environment.torch_threads\)")
    assert _tree(out) == before
    # the folder still resumes with its own settings (nothing was rewritten by the refusal)
    assert cli.main(argv + ["--resume"]) == 0


def test_resume_with_other_model_code_is_refused(omics_run, fails, monkeypatch):
    argv, out = omics_run
    assert json.loads((out / "config.json").read_text())["environment"]["model_code"] == model_code_version()
    monkeypatch.setattr(runner, "model_code_version", lambda: "0" * 12)
    fails(argv + ["--resume"], r"other settings \(environment.model_code\)")


def test_code_hash_follows_the_code_not_its_comments(tmp_path):
    f = tmp_path / "m.py"

    def h(text):
        f.write_text(text)
        return code_hash([f], tmp_path)

    base = h('"""Doc."""\n\ndef f(x):\n    """Doc."""\n    return x + 1\n')
    assert h('"""Other doc."""\n# a comment\ndef f(x):\n    return x + 1  # one more\n') == base
    assert h('"""Doc."""\n\ndef f(x):\n    return x + 2\n') != base
    assert model_code_version() == model_code_version(("deq", "fusion", "models"))
    assert model_code_version(("deq",)) != model_code_version(("fusion",))


@pytest.mark.parametrize("remove", ["config", "config+result"])
def test_resume_over_files_without_config_is_refused_and_writes_nothing(omics_run, fails, remove):
    """A folder whose config.json is gone: the finished run's result.json and the checkpoint still carry their
    settings, and a resume with other settings is refused by them without writing a config.json."""
    argv, out = omics_run
    (out / "config.json").unlink()
    if remove == "config+result":
        (out / "concat" / "seed0" / "result.json").unlink()
        pattern = r"checkpoint.pt was written by a run with other settings"
    else:
        pattern = r"result.json was written with other settings"
    before = _tree(out)
    fails(_with(argv, "--threads", "2") + ["--resume"], pattern)
    assert _tree(out) == before and not (out / "config.json").exists()
    assert cli.main(argv + ["--resume"]) == 0  # the original settings are still accepted


def test_checkpoint_with_a_tensor_of_the_wrong_shape_or_a_missing_key(omics_run, fails):
    argv, out = omics_run
    (out / "concat" / "seed0" / "result.json").unlink()
    ckpt = out / "concat" / "seed0" / "checkpoint.pt"
    good = load_checkpoint(ckpt)
    state = load_checkpoint(ckpt)
    name, value = next(iter(state["model"].items()))
    state["model"][name] = torch.zeros(value.shape[0] + 1, *value.shape[1:])
    save_checkpoint(ckpt, state)
    fails(argv + ["--resume"], rf"checkpoint.pt: its model state does not fit \('{name}' has shape")
    state = dict(good)
    del state["scheduler"]
    save_checkpoint(ckpt, state)
    fails(argv + ["--resume"], r"checkpoint.pt is not a checkpoint of this trainer: it has no 'scheduler' entry")
    ckpt.write_bytes(b"not a checkpoint")
    fails(argv + ["--resume"], r"checkpoint.pt")


def test_mosi_features_resume_with_other_numerics_is_refused_and_writes_nothing(shared_data_dir, tmp_path, fails):
    out = tmp_path / "run"
    argv = ["mosi-features", "--data-dir", str(shared_data_dir), "--seeds", "0", "--epochs", "1", "--fusion",
            "concat", "--subsets", "T+A", "--threads", "1", "--out", str(out)]
    assert cli.main(argv) == 0
    assert json.loads((out / "config.json").read_text())["environment"]["torch_threads"] == 1
    fails(_with(argv, "--threads", "2") + ["--resume"],
          r"config.json was written with other settings \(environment.torch_threads\)")
    (out / "config.json").unlink()
    (out / "T+A concat" / "seed0" / "result.json").unlink()
    before = _tree(out)
    fails(_with(argv, "--threads", "2") + ["--resume"], r"checkpoint.pt was written by a run with other settings")
    assert _tree(out) == before and not (out / "config.json").exists()
    assert cli.main(argv + ["--resume"]) == 0


def test_mmimdb_resume_with_other_numerics_is_refused_and_writes_nothing(tmp_path, fails):
    from ..data.mmimdb_files import write_file

    data = write_file(tmp_path / "imdb.hdf5", n_rows=120, mark_rows=False)
    out = tmp_path / "run"
    argv = ["mmimdb", "--data", str(data), "--out", str(out), "--fusion", "concat", "--seeds", "0", "--max-epochs",
            "2", "--hidden", "16", "--batch-size", "32", "--no-progress", "--device", "cpu"]
    assert cli.main(argv) == 0
    assert json.loads((out / "config.json").read_text())["environment"]["torch_threads"] == 1
    torch.set_num_threads(2)  # as another OMP_NUM_THREADS would: the arithmetic changes
    fails(argv + ["--resume"], r"config.json was written with other settings \(environment.torch_threads\)")
    (out / "config.json").unlink()
    for result in out.rglob("result.json"):
        result.unlink()
    before = _tree(out)
    fails(argv + ["--resume"], r"checkpoint.pt was written by a run with other settings")
    assert _tree(out) == before and not (out / "config.json").exists()
    torch.set_num_threads(1)
    assert cli.main(argv + ["--resume"]) == 0
