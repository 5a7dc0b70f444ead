import csv
import json

import pytest

from deqfusion.cli import main


def _args(data, out, *extra):
    return ["mosi-features", "--data-dir", str(data), "--out", str(out), "--epochs", "2", "--patience", "2",
            "--hidden", "8", "--f-max-iter", "6", "--b-max-iter", "6", *extra]


def test_command_runs_writes_results_and_resumes(shared_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = _args(shared_data_dir, out, "--fusion", "deq", "concat", "--subsets", "T+A+V", "A", "--seeds", "0", "1")
    assert main(argv) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["data"]["counts"] == {"train": 1284, "dev": 227, "test": 684}
    assert cfg["data"]["dropped_no_continuous_label"] == {"train": 0, "dev": 2, "test": 2}
    assert 0 < cfg["data"]["clean_test_count"] < 684
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert sorted(summary) == ["A none", "T+A+V concat", "T+A+V deq"]
    assert [v["subset"] for v in cfg["variants"]] == ["T+A+V", "T+A+V", "A"]
    for s in summary.values():
        assert s["seeds"] == [0, 1]
        assert s["test_mae"]["mean"] > 0 and len(s["test_acc2_neg_pos"]["values"]) == 2
        assert s["test_clean_mae"]["mean"] > 0
    rows = (out / "per_seed.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 2
    md = (out / "summary.md").read_text()
    assert "| T+A+V deq | 2 |" in md and "clean part of the test split" in md
    res = json.loads((out / "T+A+V deq" / "seed1" / "result.json").read_text())
    assert res["test"]["n"] == 684 and res["test_clean"]["n"] == cfg["data"]["clean_test_count"]
    with (out / "T+A+V deq" / "seed1" / "history.csv").open() as f:
        assert float(next(csv.DictReader(f))["train_solver_steps"]) > 0

    # the same folder again: refused without --resume; with it, finished runs are reused unchanged
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0
    assert json.loads((out / "summary.json").read_text())["summary"] == summary
    # other settings on resume are refused
    assert main(_args(shared_data_dir, out, "--lr", "0.5", "--resume")) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--fusion", "magic"], "unknown fusion"), (["--subsets", "T+Q"], "unknown modality"),
     (["--b-mode", "phantom", "--phantom-steps", "0"], "--phantom-steps must be >= 1")],
)
def test_command_bad_options(shared_data_dir, tmp_path, capsys, extra, message):
    assert main(_args(shared_data_dir, tmp_path / "x", *extra)) == 2
    assert message in capsys.readouterr().err


def test_command_bad_data_dir(tmp_path, capsys):
    assert main(_args(tmp_path / "missing", tmp_path / "x")) == 2
    assert "not found" in capsys.readouterr().err


def test_deq_options_follow_the_backward_mode():
    import argparse

    from deqfusion.commands import mosi_features

    p = argparse.ArgumentParser()
    mosi_features.add_arguments(p)
    implicit = mosi_features.fusion_options("deq", p.parse_args(["--out", "x"]))
    phantom = mosi_features.fusion_options("deq", p.parse_args(["--out", "x", "--b-mode", "phantom",
                                                                "--phantom-steps", "3"]))
    assert implicit["b_mode"] == "implicit" and "phantom_steps" not in implicit
    assert phantom["b_mode"] == "phantom" and phantom["phantom_steps"] == 3
