"""Runs that diverge or end with a degenerate model: one line, exit status 3, the results written and flagged."""

import csv
import json

import pytest

from deqfusion import cli


def test_omics_with_a_huge_learning_rate_is_flagged(shared_data_dir, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["omics", "--data-dir", str(shared_data_dir / "rosmap"), "--no-download", "--out", str(out), "--lr",
            "1000", "--epochs", "10", "--eval-every", "2", "--fusion", "concat", "--hidden", "16", "--no-progress",
            "--threads", "1"]
    assert cli.main(argv) == 3
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("deqfusion omics: error: 1 of 1 run(s) ended with a degenerate "
                                               "model (concat seed 0: validation cross-entropy"), err
    result = json.loads((out / "concat" / "seed0" / "result.json").read_text())
    assert result["health"]["degenerate"] and result["guard"]["steps"] == 10
    assert "**Degenerate runs**" in (out / "summary.md").read_text()
    assert "degenerate" in (out / "per_seed.csv").read_text().splitlines()[0]


def test_a_healthy_run_is_not_flagged(shared_data_dir, tmp_path):
    out = tmp_path / "o"
    assert cli.main(["omics", "--data-dir", str(shared_data_dir / "rosmap"), "--no-download", "--out", str(out),
                     "--epochs", "10", "--eval-every", "2", "--fusion", "concat", "--hidden", "16", "--no-progress",
                     "--threads", "1"]) == 0
    result = json.loads((out / "concat" / "seed0" / "result.json").read_text())
    assert result["health"]["degenerate"] is None
    assert result["health"]["val_ce"] < result["health"]["constant_ce"]
    assert set(result["guard"]) >= {"steps", "skipped", "events"}


@pytest.mark.parametrize("lr, pattern", [
    ("1e4", r"every step of epoch \d+ was skipped by the divergence guard \(events so far: \{'nonfinite_grad'"),
    ("1e8", r"DEQ fusion forward solve met non-finite values"),
])
def test_mosi_features_divergence_is_one_line(shared_data_dir, tmp_path, fails, lr, pattern):
    line = fails.status(3)(["mosi-features", "--data-dir", shared_data_dir, "--lr", lr, "--epochs", "3", "--seeds",
                            "0", "--fusion", "deq", "--subsets", "T+A", "--threads", "1", "--out", tmp_path / "o"],
                           pattern)
    assert line.endswith("see the divergence guard in docs/robustness.md)")


def test_mosi_features_degenerate_model_is_flagged(shared_data_dir, tmp_path, fails):
    out = tmp_path / "o"
    fails.status(3)(["mosi-features", "--data-dir", shared_data_dir, "--lr", "1", "--epochs", "3", "--seeds", "0",
                     "--fusion", "concat", "--subsets", "T+A", "--threads", "1", "--out", out],
                    r"1 of 1 run\(s\) ended with a degenerate model \(T\+A concat seed 0: validation MAE [\d.]+ vs "
                    r"1.424 for the constant predictor")
    result = json.loads((out / "T+A concat" / "seed0" / "result.json").read_text())
    assert result["health"]["val_mae"] > 1.5 * result["health"]["constant_mae"] and result["guard"]["steps"] > 0
    assert "**Degenerate runs**" in (out / "summary.md").read_text()
    with (out / "per_seed.csv").open() as f:
        assert next(csv.DictReader(f))["degenerate"] == "1"


def test_omics_divergence_is_one_line_with_status_3(shared_data_dir, tmp_path, fails):
    fails.status(3)(["omics", "--data-dir", shared_data_dir / "rosmap", "--no-download", "--out", tmp_path / "o",
                     "--lr", "1e6", "--epochs", "30", "--eval-every", "5", "--fusion", "concat", "--hidden", "16",
                     "--no-progress", "--threads", "1"],
                    r"concat seed 0: .*(skipped as divergent|non-finite).*\(lower the learning rate or raise the "
                    r"Jacobian regularisation, or try another seed; see the divergence guard in docs/robustness.md\)$")


def test_mmimdb_degenerate_model_is_flagged(tmp_path, fails):
    from ..data.mmimdb_files import write_file

    data = write_file(tmp_path / "imdb.hdf5", n_rows=120, mark_rows=False)
    out = tmp_path / "o"
    fails.status(3)(["mmimdb", "--data", data, "--out", out, "--fusion", "concat", "--seeds", "0", "--max-epochs", "3",
                     "--hidden", "16", "--batch-size", "32", "--no-progress", "--device", "cpu", "--lr", "1e3"],
                    r"1 of 1 run\(s\) ended with a degenerate model \(concat seed 0: validation binary cross-entropy")
    result = json.loads((out / "concat" / "seed0" / "result.json").read_text())
    assert result["health"]["val_bce"] > 10 * result["health"]["constant_bce"]
    assert "**Degenerate runs**" in (out / "summary.md").read_text()
