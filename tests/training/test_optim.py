import math

import pytest
import torch

from deqfusion.training.config import TrainConfig
from deqfusion.training.optim import make_scheduler, param_groups
from deqfusion.training.trainer import Trainer

from .test_trainer import Net, _split, _trainer, metric, step

#: the omics experiment's full-batch schedule settings
OMICS = dict(optimizer="adam", lr=1e-4, weight_decay=1e-4, schedule="step", step_size=500, gamma=0.2)


def _config(**kw):
    return TrainConfig(**{**OMICS, **kw})


def test_param_groups():
    net = Net()
    groups = param_groups(net, 1e-3, 0.01, {"fusion": 1e-4})
    by_name = {g["name"]: g for g in groups}
    assert by_name["fusion"]["lr"] == 1e-4 and by_name["default"]["lr"] == 1e-3
    assert len(by_name["fusion"]["params"]) == 2 and len(by_name["default"]["params"]) == 4
    with pytest.raises(ValueError, match="no trainable parameters under"):
        param_groups(net, 1e-3, 0.0, {"fusio": 1e-4})
    trainer = Trainer(net, step, metric, TrainConfig(group_lrs={"fusion": 1e-4}))
    lrs = sorted(g["lr"] for g in trainer.optimizer.param_groups)
    assert lrs == [1e-4, 1e-3]
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    assert isinstance(Trainer(net, step, metric, TrainConfig(optimizer="adam")).optimizer, torch.optim.Adam)
    # explicit groups replace the configured ones
    own = [{"params": list(net.head.parameters()), "lr": 0.5, "weight_decay": 0.0}]
    assert [g["lr"] for g in Trainer(net, step, metric, TrainConfig(), groups=own).optimizer.param_groups] == [0.5]



def _lrs(cfg):
    """The learning rate of each epoch when the trainer's scheduler steps once per epoch."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = make_scheduler(opt, cfg)
    out = []
    for _ in range(cfg.epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out



def test_warmup_cosine_schedule_against_the_formula_written_out():

    cfg = _config(epochs=21, lr=1e-2, schedule="warmup_cosine", warmup_epochs=5, final_lr=1e-3)
    lrs = _lrs(cfg)
    # warm-up: 1/5, 2/5, ..., 5/5 of lr in epochs 1..5
    assert lrs[:5] == pytest.approx([2e-3, 4e-3, 6e-3, 8e-3, 1e-2])
    # then a half cosine from lr (epoch 6) down to final_lr (epoch 21) over 15 intervals
    expected = [1e-3 + 0.5 * (1e-2 - 1e-3) * (1 + math.cos(math.pi * k / 15)) for k in range(16)]
    assert lrs[5:] == pytest.approx(expected)
    assert lrs[-1] == pytest.approx(1e-3)
    # no warm-up: the cosine starts at lr in epoch 1
    lrs0 = _lrs(_config(epochs=3, lr=1.0, schedule="warmup_cosine", warmup_epochs=0))
    assert lrs0 == pytest.approx([1.0, 0.5, 0.0])
    # the default stays the reference's StepLR
    assert _lrs(_config(epochs=6, lr=1.0, step_size=2, gamma=0.5)) == pytest.approx(
        [1.0, 1.0, 0.5, 0.5, 0.25, 0.25])



def test_schedule_checks():
    with pytest.raises(ValueError, match="schedule must be one of"):
        _config(schedule="cosine")
    with pytest.raises(ValueError, match="warmup_epochs"):
        _config(epochs=10, schedule="warmup_cosine", warmup_epochs=10)
    with pytest.raises(ValueError, match="final_lr"):
        _config(lr=1e-3, schedule="warmup_cosine", final_lr=1e-2)



def test_epoch_schedules_step_once_per_epoch_in_mini_batches():
    trainer = _trainer(epochs=4, schedule="step", step_size=2, gamma=0.5, select="loss")
    result = trainer.fit(_split(64, 0), _split(16, 1))  # 2 steps per epoch
    assert [h["lr"] for h in result.history] == pytest.approx([1e-2, 5e-3, 5e-3, 2.5e-3])
