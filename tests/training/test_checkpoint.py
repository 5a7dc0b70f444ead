import os

import pytest
import torch
from torch import nn

from deqfusion.errors import UserError
from deqfusion.training.checkpoint import (
    CheckpointError,
    check_output_path,
    load_checkpoint,
    load_state_into,
    require_entries,
    save_checkpoint,
)


def _model():
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_a_fitting_state_loads_exactly(tmp_path):
    src, dst = _model(), _model()
    save_checkpoint(tmp_path / "c.pt", {"model": src.state_dict()})
    load_state_into(dst, load_checkpoint(tmp_path / "c.pt")["model"], tmp_path / "c.pt")
    for a, b in zip(src.parameters(), dst.parameters(), strict=True):
        assert torch.equal(a, b)


def test_wrong_shape_missing_and_unexpected_keys_are_one_line_errors(tmp_path):
    path = tmp_path / "c.pt"
    state = _model().state_dict()
    bad = dict(state, **{"0.weight": torch.zeros(5, 3)})
    with pytest.raises(CheckpointError, match=r"c.pt: its model state does not fit \('0.weight' has shape \(5, 3\), "
                                              r"the model's \(4, 3\)\); it was written for another model"):
        load_state_into(_model(), bad, path)
    partial = {k: v for k, v in state.items() if k != "2.bias"}
    with pytest.raises(CheckpointError, match=r"missing '2.bias'"):
        load_state_into(_model(), partial, path)
    with pytest.raises(CheckpointError, match=r"unexpected 'extra.weight'"):
        load_state_into(_model(), dict(state, **{"extra.weight": torch.zeros(1)}), path)
    with pytest.raises(CheckpointError, match="its model entry is a list, not a state dict"):
        load_state_into(_model(), [1, 2], path)
    model = _model()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(CheckpointError):
        load_state_into(model, bad, path)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # left untouched
    # every message is one line
    with pytest.raises(CheckpointError) as err:
        load_state_into(_model(), {}, path)
    assert "\n" not in str(err.value) and "missing '0.weight', '0.bias', '2.weight', '2.bias'" in str(err.value)


def test_optimizer_state_of_another_model_is_refused(tmp_path):
    big = torch.optim.Adam(_model().parameters())
    small = torch.optim.Adam(nn.Linear(3, 4).parameters())
    with pytest.raises(CheckpointError, match=r"c.pt: its optimizer state does not fit \(.*\); it was written"):
        load_state_into(small, big.state_dict(), tmp_path / "c.pt", "optimizer")


def test_require_entries(tmp_path):
    require_entries({"model": 1, "rng": 2}, tmp_path / "c.pt", ["model", "rng"])
    with pytest.raises(CheckpointError, match=r"c.pt is not a checkpoint of this trainer: it has no 'optimizer', "
                                              r"'scheduler' entries"):
        require_entries({"model": 1}, tmp_path / "c.pt", ["model", "optimizer", "scheduler"])


def test_check_output_path(tmp_path):
    (tmp_path / "file").write_text("x")
    assert check_output_path(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # nothing is created
    with pytest.raises(UserError, match=r"--out .*file exists and is not a folder"):
        check_output_path(tmp_path / "file")
    with pytest.raises(UserError, match=r"--out .*file/sub cannot be created: .*file is a file, not a folder"):
        check_output_path(tmp_path / "file" / "sub")
    with pytest.raises(UserError, match=r"--figure .* is a folder; pass a file path"):
        check_output_path(tmp_path, "--figure", kind="file")
    assert check_output_path(tmp_path / "fig.png", kind="file") == tmp_path / "fig.png"
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(UserError, match="no write permission"):
                check_output_path(ro / "out")
        finally:
            ro.chmod(0o700)
