"""The runner end to end on a toy experiment registered in a few lines (logistic regression on generated
points)."""

import csv
import json
import statistics

import pytest
import torch

from deqfusion.errors import UserError
from deqfusion.experiments.runner import Column, Experiment, Table, load_run, register_experiment, run_experiment

CALLS = []


def _load(settings):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(90, 2, generator=gen)
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).long()
    return {"train": (x[:60], y[:60]), "val": (x[60:75], y[60:75]), "test": (x[75:], y[75:])}


def _acc(w, xy):
    x, y = xy
    return float(((x @ w > 0).long() == y).float().mean())


def _train(run):
    CALLS.append((run.label, run.seed))
    torch.manual_seed(run.seed)
    w = torch.randn(2, requires_grad=True)
    opt = torch.optim.SGD([w], lr=run.variant["lr"])
    history = []
    x, y = run.data["train"]
    for epoch in range(1, run.settings["epochs"] + 1):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w, y.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append({"epoch": epoch, "loss": float(loss.detach())})
    return {"test": {"acc": _acc(w.detach(), run.data["test"])}, "val": {"acc": _acc(w.detach(), run.data["val"])},
            "best_epoch": run.settings["epochs"], "epochs_run": run.settings["epochs"], "train_seconds": 0.0,
            "history": history}


TOY = register_experiment(Experiment(
    name="toy", load=_load, train=_train, describe=lambda data: {"n_train": len(data["train"][1])},
    tables=lambda cfg: [Table("toy: test accuracy", [Column("test_acc", "ACC %", 100, 1)])],
))
VARIANTS = [{"label": "slow", "lr": 0.01}, {"label": "fast", "lr": 1.0}]


def _run(out, settings=None, variants=VARIANTS, seeds=(0, 1, 2), resume=False):
    return run_experiment(TOY, settings or {"epochs": 5}, variants, seeds, out, resume=resume, progress=False)


def _mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_layout_tables_and_load_run(tmp_path):
    out = tmp_path / "toy"
    CALLS.clear()
    res = _run(out)
    assert CALLS == [(v["label"], s) for v in VARIANTS for s in (0, 1, 2)]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["experiment"] == "toy" and cfg["settings"] == {"epochs": 5} and cfg["data"] == {"n_train": 60}
    assert set(cfg["environment"]) >= {"torch_threads", "world_size", "dtype", "device_type"}
    for v in VARIANTS:
        for s in (0, 1, 2):
            d = out / v["label"] / f"seed{s}"
            result = json.loads((d / "result.json").read_text())
            assert result["label"] == v["label"] and result["seed"] == s and "history" not in result
            assert result["fingerprint"]["config"] == cfg["fingerprint"]
            assert [int(r["epoch"]) for r in csv.DictReader(open(d / "history.csv"))] == [1, 2, 3, 4, 5]
    rows = list(csv.DictReader(open(out / "per_seed.csv")))
    assert [(r["label"], int(r["seed"])) for r in rows] == [(v["label"], s) for v in VARIANTS for s in (0, 1, 2)]
    summary = json.loads((out / "summary.json").read_text())["summary"]
    for v in VARIANTS:
        accs = [float(r["test_acc"]) for r in rows if r["label"] == v["label"]]
        assert summary[v["label"]]["test_acc"]["mean"] == pytest.approx(statistics.mean(accs))
        assert summary[v["label"]]["test_acc"]["std"] == pytest.approx(statistics.stdev(accs))
        cell = f"{100 * statistics.mean(accs):.1f} +- {100 * statistics.stdev(accs):.1f}"
        assert f"| {v['label']} | 3 | {cell} |" in (out / "summary.md").read_text()
    assert res["summary"] == summary
    loaded = load_run(out)
    assert loaded.experiment == "toy" and [v["label"] for v in loaded.variants] == ["slow", "fast"]
    assert len(loaded.runs) == 6 and loaded.run("fast", 2)["test"] == json.loads(
        (out / "fast" / "seed2" / "result.json").read_text())["test"]
    assert [r["test_acc"] for r in loaded.rows()] == [float(r["test_acc"]) for r in rows]


def test_resume_rule(tmp_path):
    out = tmp_path / "toy"
    _run(out, seeds=(0,))
    before = _mtimes(out)
    with pytest.raises(UserError, match="already holds a run"):
        _run(out, seeds=(0,))
    with pytest.raises(UserError, match=r"settings\.epochs"):
        _run(out, settings={"epochs": 6}, seeds=(0,), resume=True)
    with pytest.raises(UserError, match="variant 'fast' was run with other options"):
        _run(out, variants=[{"label": "fast", "lr": 0.5}], seeds=(0,), resume=True)
    assert _mtimes(out) == before  # refused: nothing written
    CALLS.clear()
    _run(out, seeds=(0, 1), resume=True)  # a seed added: only its runs train
    assert CALLS == [("slow", 1), ("fast", 1)]
    assert json.loads((out / "config.json").read_text())["seeds"] == [0, 1]
    # a finished run written under other settings is refused before anything trains
    res = out / "slow" / "seed1" / "result.json"
    res.write_text(json.dumps(dict(json.loads(res.read_text()), fingerprint={"other": 1})))
    CALLS.clear()
    with pytest.raises(UserError, match="written with other settings"):
        _run(out, seeds=(0, 1, 2), resume=True)
    assert CALLS == []


def test_bad_variants_and_seeds(tmp_path):
    with pytest.raises(UserError, match="named twice"):
        _run(tmp_path / "a", variants=[VARIANTS[0], VARIANTS[0]])
    with pytest.raises(UserError, match="repeats a seed"):
        _run(tmp_path / "b", seeds=(1, 1))
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        _run(tmp_path / "file")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
