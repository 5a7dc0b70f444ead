import logging

import pytest
import torch
from torch import nn

from deqfusion import DEQFusion
from deqfusion.fusion.registry import FusionFactory
from deqfusion.training.config import TrainConfig
from deqfusion.training.guard import DivergenceGuard, GuardConfig, TrainingDiverged
from deqfusion.training.seed import seed_everything
from deqfusion.training.trainer import StepOutput, Trainer


class Model(nn.Module):
    def __init__(self, **deq):
        super().__init__()
        self.enc = nn.Linear(6, 16)
        opts = dict(f_max_iter=20, f_tol=1e-4, b_max_iter=20, b_tol=1e-4, init="reference")  # the paper's init diverges
        opts.update(deq)
        self.fusion = DEQFusion([16, 16], 16, **opts)
        self.head = nn.Linear(16, 1)

    def forward(self, x):
        h = torch.relu(self.enc(x))
        z, info = self.fusion([h, h.flip(1)])
        return self.head(z).squeeze(1), info


def _data(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return x, x[:, 0] - x[:, 1]


def _closure(model, x, y):
    def closure():
        pred, info = model(x)
        return (pred - y).square().mean() + 0.01 * info.jac_loss, info

    return closure


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _finite(model):
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_healthy_step_is_taken():
    seed_everything(0)
    model = Model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    guard = DivergenceGuard(model)
    before = _params(model)
    rep = guard.step(_closure(model, *_data()), opt, clip_norm=1.0)
    assert rep.stepped and rep.action == "step" and rep.reasons == []
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert guard.summary()["skipped"] == 0 and sum(guard.counts.values()) == 0


def test_weight_scaled_up_diverges_and_the_step_is_skipped(caplog):
    seed_everything(0)
    model = Model()
    with torch.no_grad():
        model.fusion.fusion.gate_weight.mul_(1e20)  # the forward solve overflows
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    guard = DivergenceGuard(model, GuardConfig(policy="skip"))
    before = _params(model)
    with caplog.at_level(logging.WARNING, logger="deqfusion.training.guard"):
        rep = guard.step(_closure(model, *_data()), opt, where="test")
    assert not rep.stepped and rep.action == "skip"
    assert "forward_nonfinite" in rep.reasons
    assert guard.counts["forward_nonfinite"] == 1 and guard.skipped == 1
    assert "divergence guard" in caplog.text and "forward_nonfinite" in caplog.text
    # the optimiser did not step: every weight is unchanged and finite, no gradient is left behind
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert _finite(model)
    assert all(p.grad is None for p in model.parameters())
    # the module's own setting (raise on divergence) is restored after the guarded step
    assert model.fusion.on_nonfinite == "raise"


def test_weight_set_to_inf_is_caught_and_counted():
    seed_everything(0)
    model = Model()
    with torch.no_grad():
        model.head.weight[0, 0] = float("inf")
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    guard = DivergenceGuard(model)
    enc_before = model.enc.weight.detach().clone()
    rep = guard.step(_closure(model, *_data()), opt)
    assert not rep.stepped
    assert rep.reasons[0] == "nonfinite_loss" and guard.counts["nonfinite_loss"] == 1
    assert torch.equal(model.enc.weight, enc_before)  # nothing was stepped on the NaN gradients


def test_without_the_guard_the_same_divergence_corrupts_the_weights():
    # the reason for the guard: with on_nonfinite="return" a diverged solve yields finite outputs, and a plain
    # training step then moves the weights on meaningless gradients (here: into NaN/inf)
    seed_everything(0)
    model = Model(on_nonfinite="return")
    with torch.no_grad():
        model.head.weight[0, 0] = float("inf")
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    loss, _ = _closure(model, *_data())()
    loss.backward()
    opt.step()
    assert not _finite(model.enc)


def test_residual_bound_falls_back_to_phantom_gradient():
    seed_everything(0)
    model = Model(b_mode="implicit", b_max_iter=1)  # the adjoint solve cannot meet a tight bound in 1 step
    with torch.no_grad():  # a contractive map: the forward solve gets close to its fixed point
        for p in model.fusion.parameters():
            if p.dim() >= 2:
                p.mul_(0.5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = _data()
    with torch.no_grad():
        _, info = model(x)
    bound = 2 * float(info.forward.rel_residual.max())  # the forward passes (~0.04), the backward does not (~0.9)
    guard = DivergenceGuard(model, GuardConfig(policy="phantom", max_residual=bound))
    before = _params(model)
    rep = guard.step(_closure(model, x, y), opt)
    assert rep.reasons == ["backward_residual"] and rep.action == "phantom" and rep.stepped
    assert guard.counts["backward_residual"] == 1 and guard.phantom_steps_taken == 1 and guard.skipped == 0
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.fusion.solver_config["b_mode"] == "implicit"  # restored after the retry

    # the same event under the skip policy: no step
    skip = DivergenceGuard(model, GuardConfig(policy="skip", max_residual=bound))
    after = _params(model)
    assert not skip.step(_closure(model, x, y), opt).stepped
    assert all(torch.equal(after[k], v) for k, v in model.state_dict().items())


def test_raise_policy_and_too_many_skips():
    seed_everything(0)
    model = Model()
    with torch.no_grad():
        model.fusion.fusion.gate_weight.mul_(1e20)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    with pytest.raises(TrainingDiverged, match="forward_nonfinite"):
        DivergenceGuard(model, GuardConfig(policy="raise")).step(_closure(model, *_data()), opt)
    guard = DivergenceGuard(model, GuardConfig(max_consecutive=3))
    for _ in range(2):
        assert not guard.step(_closure(model, *_data()), opt).stepped
    with pytest.raises(TrainingDiverged, match="3 training steps in a row"):
        guard.step(_closure(model, *_data()), opt)
    with pytest.raises(ValueError, match="policy"):
        GuardConfig(policy="ignore")


def test_trainer_skips_divergent_batches_and_reports_them(tmp_path):
    x, y = _data(64, 0)
    xv, yv = _data(16, 1)
    calls = []

    def step(model, batch, training):
        pred, info = model(batch["x"])
        loss = (pred - batch["y"]).abs().mean() + 0.01 * info.jac_loss
        if training:
            calls.append(1)
            if len(calls) in (2, 5):  # two forced divergences
                loss = loss * float("nan")
        return StepOutput(loss, pred.detach(), batch["y"])

    seed_everything(0)
    model = Model()
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-3, weight_decay=1e-2, select="loss")
    result = Trainer(model, step, None, cfg, checkpoint=tmp_path / "c.pt").fit({"x": x, "y": y}, {"x": xv, "y": yv})
    assert result.guard["skipped"] == 2 and result.guard["events"]["nonfinite_loss"] == 2
    assert result.history[0]["train_loss"] == pytest.approx(result.history[0]["train_loss"])  # finite
    assert _finite(model)


def _omics_fit(config, loss_hook=None, scale_at=None, box=None):
    from deqfusion.metrics.classification import classification_metrics
    from deqfusion.models.omics import OmicsClassifier, omics_loss
    from deqfusion.training.objective import fit

    seed_everything(0)
    g = torch.Generator().manual_seed(0)
    xs = [torch.rand(30, 7, generator=g), torch.rand(30, 5, generator=g)]
    y = torch.arange(30) % 3
    model = OmicsClassifier([7, 5], 3, hidden=8, fusion=FusionFactory("deq", f_max_iter=15))
    if box is not None:
        box.append(model)
    calls = []

    def loss_fn(out, yy):
        total, parts = omics_loss(out, yy, lambda_jac=1.0)
        if model.training:
            calls.append(1)
            if loss_hook is not None:
                total = loss_hook(len(calls), total)
        return total, parts

    def progress(row):
        if scale_at is not None and row["epoch"] == scale_at:
            with torch.no_grad():
                model.fusion.fusion.gate_weight.mul_(1e20)

    res = fit(model, xs, y, xs, y, config, loss_fn, lambda o: o.probs(),
              lambda yy, p: classification_metrics(yy, p, 3), progress=progress)
    return model, res


def test_full_batch_skips_a_divergent_epoch_and_counts_it():
    cfg = TrainConfig(epochs=6, optimizer="adam", lr=1e-3, weight_decay=1e-4, schedule="step", clip_norm=30.0,
                      eval_every=2, select="ce")
    model, res = _omics_fit(cfg, loss_hook=lambda k, t: t * float("nan") if k == 3 else t)
    assert res.guard["skipped"] == 1 and res.guard["events"]["nonfinite_loss"] == 1 and res.epochs_run == 6
    assert _finite(model)


def test_full_batch_weight_scaled_up_is_caught_and_training_stops_with_finite_weights():
    cfg = TrainConfig(epochs=20, optimizer="adam", lr=1e-3, weight_decay=1e-4, schedule="step", clip_norm=30.0,
                      eval_every=50, select="ce", guard_max_consecutive=3)
    seen = {}

    def hook(k, total):
        seen["last"] = k
        return total

    box = []
    with pytest.raises(TrainingDiverged, match="3 training steps in a row"):
        _omics_fit(cfg, loss_hook=hook, scale_at=2, box=box)  # from epoch 3 on the forward solve overflows
    assert seen["last"] == 5  # epochs 3, 4, 5 were skipped, then training stopped
    assert _finite(box[0])  # never stepped on the diverged epochs
