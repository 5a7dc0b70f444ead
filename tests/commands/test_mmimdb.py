import csv
import json

import pytest
import torch

from deqfusion.cli import main
from deqfusion.data.mmimdb import load_split
from deqfusion.errors import UserError
from deqfusion.fusion.registry import FusionFactory
from deqfusion.metrics.multilabel import multilabel_f1
from deqfusion.models.mmimdb import build_mmimdb_model
from deqfusion.training.checkpoint import load_checkpoint

from ..data.mmimdb_files import write_file

FUSIONS = ["early", "concat", "lowrank:rank=4", "deq:f_max_iter=8,b_mode=phantom"]
COMMON = ["--seeds", "0", "1", "--max-epochs", "3", "--hidden", "16", "--batch-size", "32", "--no-progress",
          "--device", "cpu"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_file(tmp_path_factory.mktemp("mmimdb") / "imdb.hdf5", n_rows=240, mark_rows=False)


@pytest.fixture(scope="module")
def finished_run(data_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "out"
    rc = main(["mmimdb", "--data", str(data_file), "--out", str(out), "--fusion", *FUSIONS, *COMMON])
    assert rc == 0
    return out


def test_fusion_specs_resolve_against_the_presets():
    from deqfusion.experiments.fusion_spec import resolve_fusion_spec
    from deqfusion.experiments.mmimdb import OTHERS, PRESETS

    r = resolve_fusion_spec("deq:b_mode=phantom,f_max_iter=30,f_tol=1e-3,unimodal=false", PRESETS, OTHERS)
    assert r["options"] == {"fusion_norm": "gn_relu", "b_mode": "phantom", "f_max_iter": 30, "f_tol": 1e-3,
                            "unimodal": False}
    assert r["label"] == "deq_b_mode-phantom_f_max_iter-30_f_tol-0.001_unimodal-False"
    with pytest.raises(UserError, match="unknown fusion 'attn'"):
        resolve_fusion_spec("attn", PRESETS, OTHERS)
    with pytest.raises(UserError, match="early takes no options"):
        resolve_fusion_spec("early:rank=3", PRESETS, OTHERS)


def test_outputs(finished_run, data_file):
    out = finished_run
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["split_bounds"] == {"train": [0, 144], "valid": [144, 168], "test": [168, 240]}
    assert [f["label"] for f in config["variants"]] == ["early", "concat", "lowrank_rank-4",
                                                        "deq_f_max_iter-8_b_mode-phantom"]
    # the MM-IMDB preset of the reference (GN before ReLU in the fusion block) is resolved into the config
    assert config["variants"][3]["options"] == {"fusion_norm": "gn_relu", "f_max_iter": 8, "b_mode": "phantom"}
    assert config["variants"][2]["options"] == {"rank": 4}
    rows = list(csv.DictReader(open(out / "per_seed.csv")))
    assert len(rows) == 8
    summary = json.loads((out / "summary.json").read_text())["summary"]
    for label in ["early", "concat", "lowrank_rank-4", "deq_f_max_iter-8_b_mode-phantom"]:
        s = summary[label]
        assert len(s["test_macro_f1"]["values"]) == 2 and 0 <= s["test_macro_f1"]["mean"] <= 1
        assert s["train_samples_per_s"]["mean"] > 0
    assert {"label", "seed", "test_micro_f1", "test_macro_f1", "test_samples_f1", "test_weighted_f1",
            "train_samples_per_s", "peak_memory_mb"} <= set(rows[0])
    assert "| deq_f_max_iter-8_b_mode-phantom | 2 |" in (out / "summary.md").read_text()
    run_dir = out / "deq_f_max_iter-8_b_mode-phantom" / "seed1"
    run = json.loads((run_dir / "result.json").read_text())
    history = list(csv.DictReader(open(run_dir / "history.csv")))
    assert run["epochs_run"] == 3 and len(history) == 3
    assert float(history[0]["train_solver_steps"]) > 0 and "train_jac_loss" in history[0]
    assert 1 <= run["solver_steps"] == run["test"]["solver_steps"] <= 8
    assert run["config"]["group_lrs"] == {"fusion": 1e-4}
    early = json.loads((out / "early" / "seed0" / "result.json").read_text())
    assert early["config"]["group_lrs"] == {} and early["n_fusion_params"] == 0


@pytest.mark.parametrize("label, name, options", [("concat", "concat", {}),
                                                  ("lowrank_rank-4", "lowrank", {"rank": 4})])
def test_test_metrics_come_from_the_selected_model_on_the_test_split(finished_run, data_file, label, name,
                                                                     options):
    out = finished_run
    run = json.loads((out / label / "seed0" / "result.json").read_text())
    best = load_checkpoint(out / label / "seed0" / "checkpoint.pt")["best"]
    assert best["epoch"] == run["best_epoch"]
    history = list(csv.DictReader(open(out / label / "seed0" / "history.csv")))
    assert run["val"]["macro_f1"] == max(float(h["val_macro_f1"]) for h in history)
    model = build_mmimdb_model(FusionFactory(name, **options) if name != "early" else name, hidden=16)
    model.load_state_dict(best["model"])
    model.eval()
    test = load_split(data_file, "test").tensors()
    with torch.no_grad():
        logits, _ = model(test["text"], test["image"])
    expected = multilabel_f1(logits, test["labels"])
    assert {k: run["test"][k] for k in expected} == pytest.approx(expected)
    valid = load_split(data_file, "valid").tensors()
    with torch.no_grad():
        logits, _ = model(valid["text"], valid["image"])
    assert run["val"]["macro_f1"] == pytest.approx(multilabel_f1(logits, valid["labels"])["macro_f1"])


def test_resume_and_refusals(finished_run, data_file, capsys):
    out = finished_run
    before = (out / "per_seed.csv").read_text()
    # a finished run is reused, not retrained
    rc = main(["mmimdb", "--data", str(data_file), "--out", str(out), "--fusion", *FUSIONS, *COMMON,
               "--resume"])
    assert rc == 0
    assert (out / "per_seed.csv").read_text() == before
    capsys.readouterr()
    rc = main(["mmimdb", "--data", str(data_file), "--out", str(out), "--fusion", *FUSIONS, *COMMON])
    assert rc == 2 and "pass --resume" in capsys.readouterr().err
    rc = main(["mmimdb", "--data", str(data_file), "--out", str(out), "--fusion", *FUSIONS, *COMMON,
               "--resume", "--lr", "0.01"])
    err = capsys.readouterr().err
    assert rc == 2 and "other settings (settings.lr)" in err


def test_resume_continues_an_interrupted_run(data_file, tmp_path):
    out = tmp_path / "out"
    args = ["mmimdb", "--data", str(data_file), "--out", str(out), "--fusion", "concat", "--seeds", "0",
            "--hidden", "16", "--batch-size", "32", "--no-progress", "--patience", "100"]
    assert main(args + ["--max-epochs", "4"]) == 0
    full = json.loads((out / "concat" / "seed0" / "result.json").read_text())
    # the same run interrupted in its third epoch, then resumed
    out2 = tmp_path / "out2"
    args2 = [a if a != str(out) else str(out2) for a in args]
    from deqfusion.training.trainer import Trainer

    calls = {"n": 0}
    original = Trainer._train_epoch

    def dying(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    Trainer._train_epoch = dying
    try:
        assert main(args2 + ["--max-epochs", "4"]) == 130
    finally:
        Trainer._train_epoch = original
    assert load_checkpoint(out2 / "concat" / "seed0" / "checkpoint.pt")["state"]["epoch"] == 2
    assert main(args2 + ["--max-epochs", "4", "--resume"]) == 0
    resumed = json.loads((out2 / "concat" / "seed0" / "result.json").read_text())
    assert (out2 / "concat" / "seed0" / "history.csv").read_text().count("\n") == 5
    assert resumed["epochs_run"] == full["epochs_run"] == 4
    assert resumed["test"] == pytest.approx(full["test"], rel=1e-5)


def test_user_errors(tmp_path, data_file, capsys):
    rc = main(["mmimdb", "--data", str(tmp_path / "missing.hdf5"), "--out", str(tmp_path / "o")])
    assert rc == 2 and "MM-IMDB file not found" in capsys.readouterr().err
    rc = main(["mmimdb", "--data", str(data_file), "--out", str(tmp_path / "o"), "--fusion", "deq:bogus=1",
               *COMMON])
    err = capsys.readouterr().err
    assert rc == 2 and "fusion 'deq' has no option 'bogus'" in err
    rc = main(["mmimdb", "--data", str(data_file), "--out", str(tmp_path / "o2"), "--split", "10"])
    assert rc == 2 and "--split takes TRAIN_END,VALID_END" in capsys.readouterr().err
    rc = main(["mmimdb", "--data", str(data_file), "--out", str(tmp_path / "o3"), "--fusion", "concat",
               "concat"])
    assert rc == 2 and "same setting twice" in capsys.readouterr().err
