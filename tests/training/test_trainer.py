
import pytest
import torch
from torch import nn

from deqfusion.errors import UserError
from deqfusion.training.checkpoint import load_checkpoint
from deqfusion.training.config import TrainConfig
from deqfusion.training.seed import seed_everything
from deqfusion.training.trainer import StepOutput, Trainer, TrainingDiverged


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
    base = dict(epochs=6, batch_size=32, lr=1e-2, weight_decay=0.0, select="mae", select_mode="min")
    base.update(cfg)
    checkpoint = tmp / "checkpoint.pt" if tmp is not None else None
    return Trainer(Net(), step, metric, TrainConfig(**base), checkpoint=checkpoint, fingerprint=fingerprint)


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
    hist = result.history
    assert len(hist) == 6 and result.epochs_run == 6
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    best = min(hist, key=lambda h: h["val_mae"])
    assert result.best_epoch == best["epoch"] and result.best_score == best["val_mae"]
    assert result.val["mae"] == best["val_mae"]
    assert result.test["n"] == 64.0 and "loss" in result.test
    # one scoring of the validation split before training checks the selection score, then one per epoch
    assert calls.count("train test") == 1 and calls.count("train valid") == 7
    assert result.train_samples_per_s > 0 and result.peak_memory_mb > 0
    assert result.memory_kind == "cpu_max_rss"
    assert "train_pred_mean" in hist[0] and "train_seconds" not in hist[0]
    # the test metrics are those of the selected model, not the last one
    trainer.model.eval()
    with torch.no_grad():
        mae = float((trainer.model(test["x"]) - test["y"]).abs().mean())
    assert result.test["mae"] == pytest.approx(mae, rel=1e-5)


def test_full_batch_is_one_unshuffled_step_per_epoch():
    train, valid = _split(64, 0), _split(16, 1)
    seen = []

    def recording(model, batch, training):
        if training:
            seen.append(batch["x"])
        return step(model, batch, training)

    trainer = _trainer(epochs=3, batch_size=None)
    trainer.step_fn = recording
    result = trainer.fit(train, valid)
    assert len(seen) == 3 and all(torch.equal(x, train["x"]) for x in seen)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]


def test_early_stopping_with_patience():
    train, valid = _split(128, 0), _split(32, 1)
    # a metric that never improves after epoch 1: stop after 1 + patience epochs
    trainer = _trainer(epochs=50, patience=3)
    trainer.metric_fn = lambda p, t: {"mae": 1.0}
    result = trainer.fit(train, valid)
    assert result.stopped_early and result.epochs_run == 4 and result.best_epoch == 1
    assert result.test is None


def test_select_max_mode():
    train, valid = _split(64, 0), _split(32, 1)
    trainer = _trainer(epochs=4, select="score", select_mode="max")
    values = iter([0.0, 0.1, 0.5, 0.3, 0.2])  # the first: the selection check before training
    trainer.metric_fn = lambda p, t: {"score": next(values)}
    result = trainer.fit(train, valid)
    assert result.best_epoch == 2 and result.val["score"] == 0.5
    assert result.selection == {"metric": "score", "mode": "max"}


def test_bad_selection_metric_is_refused_before_training():
    trainer = _trainer(select="accuracy")
    with pytest.raises(UserError, match="selection score 'accuracy' is not among .*choose one of loss, mae, n, "
                                        "pred_mean"):
        trainer.fit(_split(32, 0), _split(16, 1))


def test_divergence_is_reported():
    def bad_step(model, batch, training):
        out = step(model, batch, training)
        return StepOutput(out.loss * float("nan"), out.predictions, out.targets)

    trainer = _trainer()
    trainer.step_fn = bad_step
    with pytest.raises(TrainingDiverged, match="every step of epoch 1 was skipped"):
        trainer.fit(_split(32, 0), _split(16, 1))
    trainer = _trainer(guard=None)
    trainer.step_fn = bad_step
    with pytest.raises(TrainingDiverged, match="training loss became nan in epoch 1 batch 1"):
        trainer.fit(_split(64, 0), _split(16, 1))


def test_warmup_schedule():
    trainer = _trainer(epochs=2, schedule="warmup_linear", warmup_fraction=0.25, select="loss")
    result = trainer.fit(_split(64, 0), _split(16, 1))  # 2 steps per epoch, 4 steps, 1 warm-up step
    # lr after epoch 1 (2 steps): decayed to (4 - 2) / 3 of the peak; after the 4 steps it reached 0
    assert result.history[0]["lr"] == pytest.approx(1e-2 * 2 / 3)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="cosine")


def test_checkpoints_and_exact_resume(tmp_path):
    train, valid, test = _split(128, 0), _split(32, 1), _split(32, 2)
    full = _trainer(tmp_path / "full", epochs=5).fit(train, valid, test)

    # a run killed in epoch 4 (4 training batches per epoch), then resumed
    part = _trainer(tmp_path / "part", epochs=5)
    calls = []

    def dying_step(model, batch, training):
        calls.append(training)
        if sum(calls) > 13:
            raise KeyboardInterrupt
        return step(model, batch, training)

    part.step_fn = dying_step
    with pytest.raises(KeyboardInterrupt):
        part.fit(train, valid, test)
    ckpt = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    assert ckpt["state"]["epoch"] == 3 and not ckpt["done"] and ckpt["best"]["epoch"] == ckpt["state"]["best_epoch"]
    seed_everything(123)  # resume must restore the RNG state itself
    resumed = _trainer(tmp_path / "part", epochs=5).fit(train, valid, test, resume=True)
    assert resumed.resumed_from == 3
    assert [h["train_loss"] for h in resumed.history] == pytest.approx(
        [h["train_loss"] for h in full.history], rel=1e-6)
    assert resumed.test == pytest.approx(full.test, rel=1e-6)
    done = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    assert done["done"] and done["result"]["test"] == resumed.test

    # a finished run is not trained again; the model gets the selected weights
    again = _trainer(tmp_path / "part", epochs=5)
    again.step_fn = None  # would fail if called
    result = again.fit(train, valid, test, resume=True)
    assert result.test == resumed.test and result.history == resumed.history
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, done["best"]["model"][k])


def test_resume_refuses_other_settings(tmp_path):
    train, valid = _split(64, 0), _split(16, 1)
    _trainer(tmp_path, fingerprint={"lr": 1}, epochs=1).fit(train, valid)
    with pytest.raises(UserError, match="other settings"):
        _trainer(tmp_path, fingerprint={"lr": 2}, epochs=2).fit(train, valid, resume=True)
