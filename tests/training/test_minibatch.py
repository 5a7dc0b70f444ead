import math

import pytest
import torch
from torch import nn

from deqfusion.errors import UserError
from deqfusion.training.checkpoint import load_checkpoint
from deqfusion.training.minibatch import (
    MinibatchTrainer,
    StepOutput,
    TrainerConfig,
    TrainingDiverged,
    iterate_batches,
    param_groups,
)
from deqfusion.training.seed import seed_everything


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.1))
        self.fusion = nn.Linear(16, 16)
        self.head = nn.Linear(16, 1)

    def forward(self, x):
        return self.head(torch.relu(self.fusion(self.body(x)))).squeeze(1)


def _split(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x[:, 0] * x[:, 1] + x[:, 2]
    return {"x": x, "y": y}


def step(model, batch, training):
    pred = model(batch["x"])
    loss = (pred - batch["y"]).square().mean()
    logs = {"pred_mean": pred.mean().detach()}
    return StepOutput(loss=loss, predictions=pred, targets=batch["y"], logs=logs)


def metric(pred, target):
    return {"mae": float((pred - target).abs().mean()), "n": float(len(pred))}


def _trainer(tmp=None, fingerprint=None, **cfg):
    seed_everything(0)
    base = dict(max_epochs=6, batch_size=32, lr=1e-2, weight_decay=0.0, select_metric="mae",
                select_mode="min")
    base.update(cfg)
    return MinibatchTrainer(Net(), step, metric, TrainerConfig(**base), out_dir=tmp, fingerprint=fingerprint)


def test_iterate_batches_and_sizes():
    split = {"a": torch.arange(10), "b": torch.arange(10) * 2}
    batches = list(iterate_batches(split, 4))
    assert [len(b["a"]) for b in batches] == [4, 4, 2]
    assert list(iterate_batches(split, 4, drop_last=True))[-1]["a"].tolist() == [4, 5, 6, 7]
    order = torch.tensor([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    first = next(iterate_batches(split, 3, order))
    assert first["a"].tolist() == [9, 8, 7] and first["b"].tolist() == [18, 16, 14]
    with pytest.raises(ValueError, match="different numbers of samples"):
        list(iterate_batches({"a": torch.zeros(3), "b": torch.zeros(4)}, 2))


def test_param_groups():
    net = Net()
    groups = param_groups(net, 1e-3, 0.01, {"fusion": 1e-4})
    by_name = {g["name"]: g for g in groups}
    assert by_name["fusion"]["lr"] == 1e-4 and by_name["default"]["lr"] == 1e-3
    assert len(by_name["fusion"]["params"]) == 2 and len(by_name["default"]["params"]) == 4
    with pytest.raises(ValueError, match="no trainable parameters under"):
        param_groups(net, 1e-3, 0.0, {"fusio": 1e-4})
    trainer = MinibatchTrainer(net, step, metric, TrainerConfig(group_lrs={"fusion": 1e-4}))
    lrs = sorted(g["lr"] for g in trainer.optimizer.param_groups)
    assert lrs == [1e-4, 1e-3]


def test_fit_learns_selects_and_tests_once():
    train, valid, test = _split(256, 0), _split(64, 1), _split(64, 2)
    trainer = _trainer()
    calls = []
    inner = trainer.evaluate

    def spy(split, desc="eval"):
        calls.append(desc)
        return inner(split, desc)

    trainer.evaluate = spy
    result = trainer.fit(train, valid, test)
    hist = result["history"]
    assert len(hist) == 6 and result["epochs_run"] == 6
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    best = min(hist, key=lambda h: h["valid_mae"])
    assert result["best_epoch"] == best["epoch"]
    assert result["valid"]["mae"] == best["valid_mae"]
    assert result["test"]["n"] == 64.0 and "loss" in result["test"]
    assert calls.count("train test") == 1 and calls.count("train valid") == 6
    assert result["train_samples_per_s"] > 0 and result["peak_memory_mb"] > 0
    assert result["memory_kind"] == "cpu_max_rss"
    assert "train_pred_mean" in hist[0]
    # the test metrics are those of the selected model, not the last one
    trainer.model.eval()
    with torch.no_grad():
        mae = float((trainer.model(test["x"]) - test["y"]).abs().mean())
    assert result["test"]["mae"] == pytest.approx(mae, rel=1e-5)


def test_early_stopping_with_patience():
    train, valid = _split(128, 0), _split(32, 1)
    # a metric that never improves after epoch 1: stop after 1 + patience epochs
    trainer = _trainer(max_epochs=50, patience=3)
    trainer.metric_fn = lambda p, t: {"mae": 1.0}
    result = trainer.fit(train, valid)
    assert result["stopped_early"] and result["epochs_run"] == 4 and result["best_epoch"] == 1
    assert result["test"] is None


def test_select_max_mode():
    train, valid = _split(64, 0), _split(32, 1)
    trainer = _trainer(max_epochs=4, select_metric="score", select_mode="max")
    values = iter([0.1, 0.5, 0.3, 0.2])
    trainer.metric_fn = lambda p, t: {"score": next(values)}
    result = trainer.fit(train, valid)
    assert result["best_epoch"] == 2 and result["valid"]["score"] == 0.5


def test_bad_selection_metric():
    trainer = _trainer(select_metric="accuracy")
    with pytest.raises(ValueError, match="selection metric 'accuracy'"):
        trainer.fit(_split(32, 0), _split(16, 1))


def test_divergence_is_reported():
    def bad_step(model, batch, training):
        out = step(model, batch, training)
        return StepOutput(out.loss * float("nan"), out.predictions, out.targets)

    trainer = _trainer()
    trainer.step_fn = bad_step
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        trainer.fit(_split(32, 0), _split(16, 1))


def test_warmup_schedule():
    trainer = _trainer(max_epochs=2, schedule="warmup_linear", warmup_fraction=0.25, select_metric="loss")
    result = trainer.fit(_split(64, 0), _split(16, 1))  # 2 steps per epoch, 4 steps, 1 warm-up step
    # lr after epoch 1 (2 steps): decayed to (4 - 2) / 3 of the peak; after the 4 steps it reached 0
    assert result["history"][0]["lr"] == pytest.approx(1e-2 * 2 / 3)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="schedule"):
        TrainerConfig(schedule="cosine")


def test_checkpoints_and_exact_resume(tmp_path):
    train, valid, test = _split(128, 0), _split(32, 1), _split(32, 2)
    full = _trainer(tmp_path / "full", max_epochs=5).fit(train, valid, test)

    # a run killed in epoch 4 (4 training batches per epoch), then resumed
    part = _trainer(tmp_path / "part", max_epochs=5)
    calls = []

    def dying_step(model, batch, training):
        calls.append(training)
        if sum(calls) > 13:
            raise KeyboardInterrupt
        return step(model, batch, training)

    part.step_fn = dying_step
    with pytest.raises(KeyboardInterrupt):
        part.fit(train, valid, test)
    ckpt = load_checkpoint(tmp_path / "part" / "last.pt")
    assert ckpt["state"]["epoch"] == 3 and not ckpt["done"]
    seed_everything(123)  # resume must restore the RNG state itself
    resumed = _trainer(tmp_path / "part", max_epochs=5).fit(train, valid, test, resume=True)
    assert [h["train_loss"] for h in resumed["history"]] == pytest.approx(
        [h["train_loss"] for h in full["history"]], rel=1e-6)
    assert resumed["test"] == pytest.approx(full["test"], rel=1e-6)
    assert (tmp_path / "part" / "best.pt").is_file()

    # a finished run is not trained again
    again = _trainer(tmp_path / "part", max_epochs=5)
    again.step_fn = None  # would fail if called
    assert again.fit(train, valid, test, resume=True)["test"] == resumed["test"]


def test_resume_refuses_other_settings(tmp_path):
    train, valid = _split(64, 0), _split(16, 1)
    _trainer(tmp_path, fingerprint={"lr": 1}, max_epochs=1).fit(train, valid)
    with pytest.raises(UserError, match="other settings"):
        _trainer(tmp_path, fingerprint={"lr": 2}, max_epochs=2).fit(train, valid, resume=True)


def test_config_checks():
    with pytest.raises(ValueError, match="select_mode"):
        TrainerConfig(select_mode="best")
    with pytest.raises(ValueError, match="max_epochs"):
        TrainerConfig(max_epochs=0)
    assert math.isclose(TrainerConfig().lr, 1e-3)
