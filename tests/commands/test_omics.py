import argparse
import csv
import json

import pytest

from deqfusion.cli import main
from deqfusion.commands.omics import add_arguments
from deqfusion.experiments.omics import configure

FAST = ["--epochs", "8", "--eval-every", "2", "--hidden", "64", "--threads", "1", "--no-progress"]
DEQ = "deq:f_max_iter=6,b_mode=phantom,phantom_steps=2"


def _run(shared_data_dir, out, *extra):
    return main(["omics", "--dataset", "rosmap", "--data-dir", str(shared_data_dir / "rosmap"), "--out", str(out),
                 *FAST, *extra])


@pytest.fixture(scope="module")
def two_fusion_run(shared_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("omics") / "run"
    assert _run(shared_data_dir, out, "--fusion", "concat", DEQ, "--seeds", "0", "1",
                "--reference-protocol") == 0
    return out


def test_outputs_and_metric_ranges(two_fusion_run, capsys):
    out = two_fusion_run
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["experiment"] == "omics" and cfg["data"]["n_train"] == 245
    assert cfg["settings"]["hidden"] == 64 and cfg["settings"]["lambda_jac"] == 5.0
    assert [f["label"] for f in cfg["variants"]] == ["concat", "deq_f_max_iter-6_b_mode-phantom_phantom_steps-2"]
    assert cfg["variants"][1]["options"] == {"injection": "sum", "f_max_iter": 6, "b_mode": "phantom",
                                             "phantom_steps": 2}
    rows = list(csv.DictReader(open(out / "per_seed.csv")))
    assert len(rows) == 4
    for r in rows:
        for k in ("test_acc", "test_f1", "test_auc", "refbest_acc", "refbest_auc"):
            assert 0.0 <= float(r[k]) <= 1.0
        assert float(r["refbest_auc"]) >= float(r["test_auc"]) - 1e-12 or int(r["best_epoch"]) != 8
    res = json.loads((out / "concat" / "seed0" / "result.json").read_text())
    assert res["n_fit"] + res["n_val"] == 245 and res["n_test"] == 106
    assert res["test_set"] == "test files" and "validation-selected" in res["protocol"]
    assert "test-selected" in res["refbest"]["note"]
    deq = json.loads((out / cfg["variants"][1]["label"] / "seed0" / "result.json").read_text())
    assert 1 <= deq["test"]["solver_steps"] <= 6 and deq["solver_steps"] == deq["test"]["solver_steps"]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["summary"]) == {"concat", cfg["variants"][1]["label"]}
    assert summary["summary"]["concat"]["test_acc"]["values"] == [float(r["test_acc"]) for r in rows[:2]]
    table = (out / "summary.md").read_text()
    assert "| concat | 2 |" in table and "Reference protocol" in table


def test_loss_falls(two_fusion_run):
    for label in ("concat", "deq_f_max_iter-6_b_mode-phantom_phantom_steps-2"):
        hist = list(csv.DictReader(open(two_fusion_run / label / "seed0" / "history.csv")))
        assert [int(h["epoch"]) for h in hist] == [2, 4, 6, 8]
        assert float(hist[-1]["train_loss"]) < float(hist[0]["train_loss"])
    hist = list(csv.DictReader(open(two_fusion_run / "concat" / "seed0" / "history.csv")))
    assert float(hist[-1]["val_ce"]) < float(hist[0]["val_ce"])


def test_same_seed_same_results_and_resume(two_fusion_run, shared_data_dir, tmp_path):
    out = tmp_path / "again"
    assert _run(shared_data_dir, out, "--fusion", DEQ, "--seeds", "1", "--reference-protocol") == 0
    label = "deq_f_max_iter-6_b_mode-phantom_phantom_steps-2"
    a = json.loads((two_fusion_run / label / "seed1" / "result.json").read_text())
    b = json.loads((out / label / "seed1" / "result.json").read_text())
    assert a["test"] == b["test"] and a["val"] == b["val"]
    # a finished run is found by --resume and not trained again
    before = (out / label / "seed1" / "result.json").stat().st_mtime_ns
    assert _run(shared_data_dir, out, "--fusion", DEQ, "--seeds", "1", "--reference-protocol", "--resume") == 0
    assert (out / label / "seed1" / "result.json").stat().st_mtime_ns == before
    # without --resume, an existing run is not overwritten; with other settings it is refused
    assert _run(shared_data_dir, out, "--fusion", DEQ, "--seeds", "1") == 2
    assert _run(shared_data_dir, out, "--fusion", DEQ, "--seeds", "1", "--lr", "0.5", "--resume") == 2


def test_dev_holdout_scores_part_of_the_training_files(shared_data_dir, tmp_path):
    out = tmp_path / "dev"
    assert _run(shared_data_dir, out, "--fusion", "concat", "--dev-holdout", "0.25") == 0
    res = json.loads((out / "concat" / "seed0" / "result.json").read_text())
    assert res["test_set"] == "dev holdout from the training files"
    assert res["n_test"] == 62 and res["n_fit"] + res["n_val"] == 245 - 62


def test_user_errors(shared_data_dir, tmp_path, capsys):
    assert _run(shared_data_dir, tmp_path / "a", "--fusion", "nonsense") == 2
    assert "unknown fusion 'nonsense'" in capsys.readouterr().err
    assert _run(shared_data_dir, tmp_path / "b", "--fusion", "deq:f_max_iter") == 2
    assert "key=value" in capsys.readouterr().err
    assert _run(shared_data_dir, tmp_path / "c", "--modalities", "1") == 2
    assert main(["omics", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "d"), "--no-progress"]) == 2
    assert "data folder not found" in capsys.readouterr().err


def test_refit_trains_on_all_training_files_for_the_selected_epochs(shared_data_dir, tmp_path):
    out = tmp_path / "refit"
    assert _run(shared_data_dir, out, "--fusion", "concat", "--refit", "--dev-holdout", "0.25") == 0
    res = json.loads((out / "concat" / "seed0" / "result.json").read_text())
    assert res["refit"]["epochs"] == res["best_epoch"] and res["refit"]["n_train"] == 245 - 62
    assert "refit" in res["protocol"]
    for part in ("test", "test_selected"):
        assert 0.0 <= res[part]["acc"] <= 1.0 and 0.0 <= res[part]["auc"] <= 1.0
    # the selected model's scores equal those of the same run without --refit
    plain = tmp_path / "plain"
    assert _run(shared_data_dir, plain, "--fusion", "concat", "--dev-holdout", "0.25") == 0
    assert json.loads((plain / "concat" / "seed0" / "result.json").read_text())["test"] == res["test_selected"]
    row = next(csv.DictReader(open(out / "per_seed.csv")))
    assert float(row["test_acc"]) == res["test"]["acc"]
    assert float(row["test_selected_acc"]) == res["test_selected"]["acc"]
    assert "Without refit" in (out / "summary.md").read_text()
    # resuming the finished run trains nothing
    assert _run(shared_data_dir, out, "--fusion", "concat", "--refit", "--dev-holdout", "0.25", "--resume") == 0


def test_lambda_jac_defaults():
    p = argparse.ArgumentParser()
    add_arguments(p)

    def lam(*extra):
        return configure(p.parse_args(["--out", "x", *extra]))[0]["lambda_jac"]

    assert lam("--dataset", "rosmap") == 5.0  # chosen on the dev holdout
    assert lam("--dataset", "rosmap", "--reference-settings") == 20.0  # the reference's value
    assert lam("--dataset", "brca") == 20.0
    assert lam("--dataset", "rosmap", "--lambda-jac", "1") == 1.0
