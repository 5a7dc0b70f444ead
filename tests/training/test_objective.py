import pytest
import torch

from deqfusion.errors import UserError
from deqfusion.fusion.registry import FusionFactory
from deqfusion.metrics.classification import classification_metrics
from deqfusion.models.omics import OmicsClassifier, omics_loss
from deqfusion.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from deqfusion.training.config import TrainConfig
from deqfusion.training.data import stratified_split
from deqfusion.training.objective import evaluate, fit, inputs_split, objective_fns
from deqfusion.training.seed import seed_everything
from deqfusion.training.trainer import Trainer

from .test_optim import _lrs

#: the omics experiment's full-batch settings (Adam, StepLR, clipping, selection on the cross-entropy)
OMICS = dict(optimizer="adam", lr=1e-4, weight_decay=1e-4, schedule="step", step_size=500, gamma=0.2, clip_norm=30.0,
             eval_every=10, select="ce", checkpoint_every=100)


def _omics_config(**kw):
    return TrainConfig(**{**OMICS, **kw})


def _data(n=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x1 = torch.rand(n, 6, generator=g) + 0.6 * y[:, None]
    x2 = torch.rand(n, 4, generator=g) - 0.4 * y[:, None]
    return [x1, x2], y


def _loss(out, y):
    return omics_loss(out, y, lambda_jac=20.0)


def _probs(out):
    return out.probs()


def _metrics(y, p):
    return classification_metrics(y, p, 2)


def _train(cfg, seed=0, fusion="concat", opts=None, **kw):
    xs, y = _data()
    fit_idx, val_idx = stratified_split(y, 0.25, seed)
    seed_everything(seed)
    model = OmicsClassifier([6, 4], 2, hidden=8, fusion=FusionFactory(fusion, **(opts or {})))
    res = fit(model, [x[fit_idx] for x in xs], y[fit_idx], [x[val_idx] for x in xs], y[val_idx], cfg, _loss,
              _probs, _metrics, **kw)
    return model, res


def test_training_lowers_the_loss_and_selects_on_validation():
    cfg = _omics_config(epochs=60, lr=1e-2, eval_every=5, step_size=1000)
    model, res = _train(cfg)
    hist = res.history
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert res.best_epoch == min(hist, key=lambda r: r["val_ce"])["epoch"]
    assert res.val["ce"] == pytest.approx(min(r["val_ce"] for r in hist))
    assert 0 <= res.val["acc"] <= 1 and res.val["acc"] > 0.7
    assert res.reference_best_test is None and res.epochs_run == 60
    # the model holds the selected weights
    xs, y = _data()
    _, val_idx = stratified_split(y, 0.25, 0)
    again = evaluate(model, [x[val_idx] for x in xs], y[val_idx], _loss, _probs, _metrics)
    assert again["ce"] == pytest.approx(res.val["ce"], rel=1e-5)


def test_early_stopping():
    cfg = _omics_config(epochs=400, lr=5e-2, eval_every=2, patience=10, step_size=1000)
    _, res = _train(cfg)
    assert res.stopped_early and res.epochs_run < 400
    assert res.epochs_run - res.best_epoch >= 10


def test_same_seed_same_numbers_and_reference_protocol_changes_nothing():
    cfg = _omics_config(epochs=20, lr=1e-2, eval_every=5)
    m1, r1 = _train(cfg)
    m2, r2 = _train(cfg)
    assert r1.history == r2.history
    xs, y = _data(seed=1)
    ref_cfg = _omics_config(epochs=20, lr=1e-2, eval_every=5, reference_protocol=True)
    m3, r3 = _train(ref_cfg, x_test=xs, y_test=y)
    assert [h["val_ce"] for h in r3.history] == [h["val_ce"] for h in r1.history]
    for a, b in zip(m1.state_dict().values(), m3.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert set(r3.reference_best_test) >= {"acc", "acc_epoch", "auc", "auc_epoch"}
    assert r3.reference_best_test["acc"] == max(h["reftest_acc"] for h in r3.history)
    with pytest.raises(ValueError, match="reference_protocol needs"):
        _train(ref_cfg)



class _Stop(Exception):
    pass


def _train_interrupted(epoch: int, cfg, **kw) -> None:
    """``_train`` killed when the history row of ``epoch`` is reported (the checkpoints before it stay)."""
    def stop(row):
        if row["epoch"] == epoch:
            raise _Stop

    with pytest.raises(_Stop):
        _train(cfg, progress=stop, **kw)


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    opts = {"f_max_iter": 5, "b_mode": "phantom", "phantom_steps": 2}
    cfg = _omics_config(epochs=12, lr=1e-2, eval_every=3, checkpoint_every=4, step_size=5)
    _, straight = _train(cfg, fusion="deq", opts=opts)

    # interrupted after epoch 8 (two checkpoints written), then resumed
    ck = tmp_path / "ck.pt"
    _train_interrupted(9, cfg, fusion="deq", opts=opts, checkpoint_path=ck, fingerprint={"a": 1})
    assert load_checkpoint(ck)["state"]["epoch"] == 8
    model, resumed = _train(cfg, seed=0, fusion="deq", opts=opts, checkpoint_path=ck, resume=True,
                            fingerprint={"a": 1})
    assert resumed.resumed_from == 8
    assert resumed.history == straight.history
    assert resumed.best_epoch == straight.best_epoch
    # a finished checkpoint resumes to the same result without training
    _, again = _train(cfg, fusion="deq", opts=opts, checkpoint_path=ck, resume=True, fingerprint={"a": 1})
    assert again.history == straight.history and again.resumed_from == 12
    with pytest.raises(UserError, match="other settings"):
        _train(cfg, fusion="deq", opts=opts, checkpoint_path=ck, resume=True, fingerprint={"a": 2})


def test_config_checks(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        _omics_config(epochs=0)
    with pytest.raises(ValueError, match="patience"):
        _omics_config(patience=0)
    # a selection score the model and data do not have is refused before the first step, with a checkpoint
    # path given: nothing is written
    with pytest.raises(UserError, match="selection score 'bogus' is not among the validation scores .*; choose "
                                        "one of acc, auc, ce, confidence, f1, f1_macro, jac, loss"):
        _train(_omics_config(epochs=2, eval_every=1, select="bogus"), checkpoint_path=tmp_path / "c.pt")
    assert not (tmp_path / "c.pt").exists()
    with pytest.raises(UserError, match="tie-break score 'f1_weighted'"):  # a multi-class score on 2 classes
        _train(_omics_config(epochs=2, eval_every=1, tie_break="f1_weighted"))


def test_the_selection_check_leaves_the_run_as_it_was():
    """The check scores the untrained model once: weights, training mode and every RNG state are as before."""
    xs, y = _data()
    seed_everything(0)
    model = OmicsClassifier([6, 4], 2, hidden=8, fusion="deq")
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    trainer = Trainer(model, *objective_fns(_loss, _probs, _metrics), _omics_config(select="auc"))
    trainer._check_selection_keys(inputs_split(xs, y))
    assert torch.equal(rng, torch.random.get_rng_state()) and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_without_validation_trains_a_fixed_number_of_epochs_and_keeps_the_last_model():
    # the refit step: no validation part, no early stopping, the model after the last epoch
    xs, y = _data()
    seed_everything(0)
    model = OmicsClassifier([6, 4], 2, hidden=8, fusion="concat")
    cfg = _omics_config(epochs=12, lr=1e-2, eval_every=5, patience=1, step_size=1000)
    res = fit(model, xs, y, None, None, cfg, _loss, _probs, _metrics)
    assert res.epochs_run == 12 and res.best_epoch == 12 and not res.stopped_early
    assert [h["epoch"] for h in res.history] == [5, 10, 12]
    assert all(not any(k.startswith("val_") for k in h) for h in res.history)
    # the same training with one validation score at the last epoch ends with the same weights
    seed_everything(0)
    other = OmicsClassifier([6, 4], 2, hidden=8, fusion="concat")
    fit(other, xs, y, xs, y, _omics_config(epochs=12, lr=1e-2, eval_every=12, step_size=1000), _loss, _probs,
        _metrics)
    for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="both x_val and y_val"):
        fit(model, xs, y, xs, None, cfg, _loss, _probs, _metrics)
    with pytest.raises(ValueError, match="reference_protocol needs"):
        fit(model, xs, y, None, None, _omics_config(epochs=2, reference_protocol=True), _loss, _probs,
            _metrics, x_test=xs, y_test=y)


def test_warmup_cosine_run_resumes_exactly(tmp_path):
    cfg = _omics_config(epochs=12, lr=1e-2, eval_every=3, checkpoint_every=4, schedule="warmup_cosine",
                          warmup_epochs=3, final_lr=1e-4)
    _, straight = _train(cfg)
    # each history row holds the rate set for the next epoch; after the last one the schedule stays at final_lr
    lrs = _lrs(cfg)
    assert [h["lr"] for h in straight.history] == pytest.approx([lrs[3], lrs[6], lrs[9], 1e-4])

    ck = tmp_path / "ck.pt"
    _train_interrupted(9, cfg, checkpoint_path=ck)
    _, resumed = _train(cfg, checkpoint_path=ck, resume=True)
    assert resumed.resumed_from == 8
    assert resumed.history == straight.history


def test_a_checkpoint_of_the_earlier_trainers_is_refused_with_a_clear_error(tmp_path):
    cfg = _omics_config(epochs=4, lr=1e-2, eval_every=2, checkpoint_every=2, step_size=1000)
    ck = tmp_path / "ck.pt"
    _train(cfg, checkpoint_path=ck)
    state = load_checkpoint(ck)
    old = {"model": state["model"], "optimizer": state["optimizer"], "scheduler": state["scheduler"],
           "rng": state["rng"], "trainer": state["state"], "fingerprint": None}  # the earlier full-batch layout
    save_checkpoint(ck, old)
    with pytest.raises(CheckpointError, match="not a checkpoint of this trainer's format .*earlier version"):
        _train(cfg, checkpoint_path=ck, resume=True)


def test_full_batch_result_health_and_evaluation_keys():
    cfg = _omics_config(epochs=6, lr=1e-2, eval_every=3, step_size=1000)
    model, res = _train(cfg, fusion="deq", opts={"f_max_iter": 5})
    assert res.health["degenerate"] is None and res.health["final_train_loss"] == res.history[-1]["train_loss"]
    assert res.selection == {"metric": "ce", "mode": "min"} and res.test is None
    assert [h["epoch"] for h in res.history] == [3, 6] and isinstance(res.history[0]["train_solver_steps"], int)
    xs, y = _data()
    scores = evaluate(model, xs, y, _loss, _probs, _metrics)
    assert {"loss", "acc", "auc", "ce", "jac", "solver_steps", "solver_rel_residual_max"} <= set(scores)
    assert res.to_dict()["val"] == res.val
