"""``deqfusion report`` on output folders the tests write: the runner's layout (a toy experiment), an older
``per_seed.csv`` folder, every format, and the ``--fill`` / ``--check`` mode for tables kept in markdown."""

import csv
import io
import json
import statistics

import pytest

from deqfusion.cli import main
from deqfusion.errors import UserError
from deqfusion.experiments.report import build_report, fill_file, parse_column, read_folder
from deqfusion.experiments.runner import Column, Experiment, Table, register_experiment, run_experiment


def _score(lr, seed):
    """A made-up, seed-dependent test score, so that means and deviations are known in advance."""
    return 0.5 + lr / 10 + 0.01 * seed * seed


def _train(run):
    lr = run.variant["lr"]
    return {"test": {"acc": _score(lr, run.seed), "loss": 1.0 - _score(lr, run.seed)},
            "val": {"acc": _score(lr, run.seed) - 0.05}, "best_epoch": 2, "epochs_run": 3 + run.seed,
            "train_seconds": 10.0 * (run.seed + 1)}


REPORT_TOY = register_experiment(Experiment(
    name="report_toy", load=lambda settings: None, train=_train,
    tables=lambda cfg: [Table("report toy", [Column("test_acc", "ACC %", 100, 1)])],
))
SEEDS = (0, 1, 2)


def _write_run(out, variants=({"label": "slow", "lr": 0.1}, {"label": "fast", "lr": 1.0}), seeds=SEEDS):
    run_experiment(REPORT_TOY, {"epochs": 3}, [dict(v) for v in variants], seeds, out, progress=False)
    return out


def _expect(lr, scale=100, digits=1):
    vals = [_score(lr, s) * scale for s in SEEDS]
    return f"{statistics.mean(vals):.{digits}f} +- {statistics.stdev(vals):.{digits}f}"


def test_runner_folder_markdown_uses_the_experiments_columns(tmp_path):
    out = _write_run(tmp_path / "run")
    text = build_report([out]).render("md")
    lines = text.splitlines()
    assert lines[0] == "| variant | seeds | ACC % | epochs | s / run |"
    assert lines[2] == f"| slow | 3 | {_expect(0.1)} | 4 +- 1 | 20 +- 10 |"
    assert lines[3] == f"| fast | 3 | {_expect(1.0)} | 4 +- 1 | 20 +- 10 |"
    assert len(lines) == 4


def test_columns_formats_and_errors(tmp_path):
    out = _write_run(tmp_path / "run")
    rep = build_report([out], columns=["test_loss:loss::4", "val_acc"], timing=False)
    md = rep.render("md").splitlines()
    assert md[0] == "| variant | seeds | loss | val_acc |"
    vals = [1.0 - _score(0.1, s) for s in SEEDS]
    assert f"{statistics.mean(vals):.4f} +- {statistics.stdev(vals):.4f}" in md[2]
    rows = list(csv.DictReader(io.StringIO(rep.render("csv"))))
    assert [r["variant"] for r in rows] == ["slow", "fast"]
    assert float(rows[1]["test_loss_mean"]) == pytest.approx(statistics.mean(1.0 - _score(1.0, s) for s in SEEDS))
    assert float(rows[1]["val_acc_std"]) == pytest.approx(statistics.stdev(_score(1.0, s) - 0.05 for s in SEEDS))
    data = json.loads(rep.render("json"))
    assert data["fast"]["n_seeds"] == 3 and data["fast"]["seeds"] == [0, 1, 2]
    assert data["fast"]["val_acc"]["values"] == pytest.approx([_score(1.0, s) - 0.05 for s in SEEDS])
    with pytest.raises(UserError, match="no run holds 'test_f1'"):
        build_report([out], columns=["test_f1"])
    with pytest.raises(UserError, match="KEY"):
        parse_column("a:b:c:d:e")
    with pytest.raises(UserError, match="SCALE"):
        parse_column("test_acc:ACC:x")


def test_several_folders_rename_and_select(tmp_path):
    a = _write_run(tmp_path / "a", variants=[{"label": "deq", "lr": 0.1}])
    b = _write_run(tmp_path / "b", variants=[{"label": "deq", "lr": 1.0}, {"label": "concat", "lr": 0.5}])
    rep = build_report([a, b], rename=["a/deq=deq (slow)"])
    assert rep.labels == ["deq (slow)", "b/deq", "concat"]
    assert rep.body()[1][2] == _expect(1.0)
    rep = build_report([a, b], variants=["concat", "a/deq"])
    assert [r[0] for r in rep.body()] == ["concat", "a/deq"]
    with pytest.raises(UserError, match="no variant 'deq'"):
        build_report([a, b], variants=["deq"])
    with pytest.raises(UserError, match="names no variant"):
        build_report([a], rename=["nope=x"])


def test_unfinished_runs_are_left_out(tmp_path):
    out = _write_run(tmp_path / "run")
    (out / "fast" / "seed2" / "result.json").unlink()
    rep = build_report([out])
    assert [r[:2] for r in rep.body()] == [["slow", 3], ["fast", 2]]


def test_per_seed_csv_folder(tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"command": "mosi-features"}))
    rows = [{"subset": "T+A+V", "fusion": f, "seed": s, "test_mae": 0.7 + 0.01 * s + (0.1 if f == "concat" else 0),
             "epochs_run": 10, "train_time_s": 5.0} for f in ("deq", "concat") for s in range(4)]
    with open(out / "per_seed.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    src = read_folder(out)
    assert src.labels == ["deq", "concat"]  # the constant "subset" column does not name variants
    md = build_report([out], columns=["test_mae:MAE"]).render("md").splitlines()
    maes = [0.7 + 0.01 * s for s in range(4)]
    assert md[0] == "| variant | seeds | MAE | epochs | s / run |"
    assert md[2] == f"| deq | 4 | {statistics.mean(maes):.3f} +- {statistics.stdev(maes):.3f} | 10 +- 0 | 5 +- 0 |"
    assert read_folder(out, group_by=["subset", "fusion"]).labels == ["T+A+V deq", "T+A+V concat"]
    with pytest.raises(UserError, match="no column 'variant'"):
        read_folder(out, group_by=["variant"])


def test_not_a_run_folder(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        read_folder(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not an experiment output folder"):
        read_folder(tmp_path / "empty")
    assert main(["report", str(tmp_path / "empty")]) == 2


def test_cli_prints_the_table(tmp_path, capsys):
    out = _write_run(tmp_path / "run")
    assert main(["report", str(out), "--format", "csv", "--columns", "test_acc"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["variant"] for r in rows] == ["slow", "fast"]


def test_fill_and_check(tmp_path, capsys):
    _write_run(tmp_path / "results" / "toy")
    doc = tmp_path / "docs.md"
    doc.write_text("# Results\n\ntext before\n\n<!-- report: results/toy --no-timing -->\nold table\n"
                   "<!-- /report -->\n\ntext after\n")
    assert main(["report", "--fill", str(doc), "--check"]) == 1
    assert "results/toy --no-timing" in capsys.readouterr().err
    assert "old table" in doc.read_text()  # --check writes nothing
    assert main(["report", "--fill", str(doc)]) == 0
    text = doc.read_text()
    assert f"| slow | 3 | {_expect(0.1)} |" in text
    assert text.startswith("# Results\n\ntext before\n\n<!-- report: results/toy --no-timing -->\n\n| variant")
    assert text.endswith("|\n\n<!-- /report -->\n\ntext after\n")
    assert fill_file(doc, check=True) == []  # filled: nothing differs, and a second fill changes nothing
    assert main(["report", "--fill", str(doc)]) == 0 and doc.read_text() == text
    # a result changes: the table no longer matches its files
    res = tmp_path / "results" / "toy" / "fast" / "seed0" / "result.json"
    data = json.loads(res.read_text())
    data["test"]["acc"] = 0.0
    res.write_text(json.dumps(data))
    assert fill_file(doc, check=True) == ["results/toy --no-timing"]


def test_fill_errors(tmp_path):
    doc = tmp_path / "a.md"
    doc.write_text("<!-- report: nowhere -->\n| x |\n")
    with pytest.raises(UserError, match="no closing"):
        fill_file(doc)
    doc.write_text("<!-- report: nowhere -->\n<!-- /report -->\n")
    with pytest.raises(UserError, match="not a folder"):
        fill_file(doc)
    doc.write_text("<!-- report: --bogus -->\n<!-- /report -->\n")
    with pytest.raises(UserError, match="bad report arguments"):
        fill_file(doc)


def test_variants_by_old_or_new_name(tmp_path):
    out = _write_run(tmp_path / "run")
    rep = build_report([out], rename=["slow=slow (lr 0.1)"], variants=["fast", "slow"])
    assert rep.labels == ["fast", "slow (lr 0.1)"]
    rep = build_report([out], rename=["slow=slow (lr 0.1)"], variants=["slow (lr 0.1)"])
    assert rep.labels == ["slow (lr 0.1)"] and rep.body()[0][2] == _expect(0.1)


def test_long_layout_across_experiments(tmp_path):
    a = _write_run(tmp_path / "a", variants=[{"label": "deq", "lr": 0.1}])
    old = tmp_path / "old"
    old.mkdir()
    with open(old / "per_seed.csv", "w", newline="") as fh:
        fh.write("fusion,seed,test_mae\nconcat,0,0.5\nconcat,1,0.7\n")
    rep = build_report([a, old], columns=["test_acc:ACC:100:1", "test_mae:MAE"])
    lines = rep.render("md", long=True).splitlines()
    assert lines[0] == "| variant | seeds | metric | mean +- sd |"
    assert lines[2:] == [f"| deq | 3 | ACC | {_expect(0.1)} |",
                         f"| concat | 2 | MAE | 0.600 +- {statistics.stdev([0.5, 0.7]):.3f} |"]
    with pytest.raises(UserError, match="markdown"):
        rep.render("csv", long=True)


def test_measured_column_from_provenance(tmp_path, capsys):
    a = _write_run(tmp_path / "a", variants=[{"label": "deq", "lr": 0.1}])
    b = _write_run(tmp_path / "b", variants=[{"label": "concat", "lr": 1.0}])
    (a / "provenance.json").write_text(json.dumps({"date": "2026-11-28", "commit": "abc1234"}))
    rep = build_report([a, b], timing=False, measured=True)
    assert rep.render("md").splitlines()[0] == "| variant | seeds | ACC % | measured |"
    assert rep.body() == [["deq", 3, _expect(0.1), "2026-11-28, abc1234"], ["concat", 3, _expect(1.0), "-"]]
    assert rep.render("md", long=True).splitlines()[2] == f"| deq | 3 | ACC % | {_expect(0.1)} | 2026-11-28, abc1234 |"
    assert json.loads(rep.render("json"))["concat"]["measured"] is None
    assert list(csv.DictReader(io.StringIO(rep.render("csv"))))[0]["measured"] == "2026-11-28, abc1234"
    assert "measured" not in build_report([a], timing=False).render("md")
    assert main(["report", str(a), "--no-timing", "--measured"]) == 0
    assert "2026-11-28, abc1234" in capsys.readouterr().out
    (b / "provenance.json").write_text(json.dumps({"date": "2026-11-28"}))
    with pytest.raises(UserError, match="provenance.json must hold a 'date' and a 'commit'"):
        build_report([b], measured=True)


def test_pool_joins_seed_ranges_of_one_variant(tmp_path):
    a = _write_run(tmp_path / "a", variants=[{"label": "deq", "lr": 0.1}], seeds=(0, 1))
    b = _write_run(tmp_path / "b", variants=[{"label": "deq", "lr": 0.1}, {"label": "concat", "lr": 1.0}], seeds=(2,))
    (a / "provenance.json").write_text(json.dumps({"date": "2026-11-28", "commit": "aaaaaaa"}))
    (b / "provenance.json").write_text(json.dumps({"date": "2026-11-29", "commit": "bbbbbbb"}))
    rep = build_report([a, b], timing=False, pool=True, measured=True)
    assert rep.labels == ["deq", "concat"]
    assert rep.body()[0] == ["deq", 3, _expect(0.1), "2026-11-28, aaaaaaa; 2026-11-29, bbbbbbb"]
    assert build_report([a, b], timing=False).labels == ["a/deq", "b/deq", "concat"]
    with pytest.raises(UserError, match=r"seed\(s\) \[0, 1\] occur in more than one"):
        build_report([a, a], pool=True)
