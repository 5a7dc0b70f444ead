import json
import shutil

import numpy as np
import pytest
import torch

from deqfusion.cli import main
from deqfusion.data.mogonet import load_dataset
from deqfusion.errors import UserError
from deqfusion.experiments import mmdynamics as exp_mmd
from deqfusion.models.mmdynamics import MMDynamicsClassifier, mmdynamics_objective
from deqfusion.training.config import TrainConfig
from deqfusion.training.objective import evaluate, fit
from deqfusion.training.seed import seed_everything


def test_recipes_are_the_published_ones():
    r = exp_mmd.recipe("mmdynamics", "rosmap")
    assert (r["hidden"], r["dropout"], r["growth"], r["lambda_jac"]) == (1000, 0.5, 1.0, 0.0)
    assert r["train"] == dict(epochs=1000, optimizer="adam", lr=1e-4, weight_decay=1e-4, schedule="step",
                              step_size=500, gamma=0.2, clip_norm=None, guard=None)
    assert exp_mmd.recipe("mmdynamics", "brca")["train"]["epochs"] == 2500
    d = exp_mmd.recipe("mmdynamics-deq", "rosmap")
    assert (d["hidden"], d["growth"], d["lambda_jac"]) == (300, 1.5, 20.0)
    assert d["train"]["schedule"] == "warmup_cosine" and d["train"]["warmup_epochs"] == 50
    assert d["train"]["epochs"] == 1000 and d["train"]["lr"] == 1e-4 and d["train"]["optimizer"] == "adam"
    b = exp_mmd.recipe("mmdynamics-deq", "brca")
    assert b["hidden"] == 500 and b["train"]["epochs"] == 2500
    # resolving does not change the table
    b["train"]["epochs"] = 1
    assert exp_mmd.recipe("mmdynamics-deq", "brca")["train"]["epochs"] == 2500
    with pytest.raises(UserError, match="unknown recipe"):
        exp_mmd.recipe("deq", "rosmap")


@pytest.fixture
def short_recipes(monkeypatch):
    """The recipes with 6 epochs (the DEQ's warm-up 2), so that the command runs in seconds."""
    short = {name: {ds: {**entry, "train": {**entry.get("train", {}), "epochs": 6}}
                    for ds, entry in table.items()}
             for name, table in exp_mmd.RECIPES.items()}
    short["mmdynamics-deq"]["default"]["train"]["warmup_epochs"] = 2
    monkeypatch.setattr(exp_mmd, "RECIPES", short)
    return short


def test_fixed_protocol_through_the_command(shared_data_dir, tmp_path, short_recipes):
    out = tmp_path / "run"
    code = main(["omics", "--dataset", "rosmap", "--data-dir", str(shared_data_dir / "rosmap"), "--out", str(out),
                 "--fusion", "mmdynamics", "mmdynamics-deq:f_max_iter=4,b_mode=phantom", "--protocol", "fixed",
                 "--seeds", "0", "--threads", "1", "--no-progress"])
    assert code == 0
    res = json.loads((out / "mmdynamics" / "seed0" / "result.json").read_text())
    assert res["n_train"] == 245 and res["n_test"] == 106 and res["epochs_run"] == res["best_epoch"] == 6
    assert res["protocol"].startswith("fixed") and res["recipe"]["hidden"] == 1000
    assert res["recipe"]["train"]["clip_norm"] is None and res["recipe"]["fusion"] == "concat"
    # the same numbers as training the published model directly: scaling on all 245 training samples, the seed
    # set right before the model is built, the final model scored once
    data = load_dataset("rosmap", shared_data_dir / "rosmap").minmax_scaled()
    seed_everything(0)
    model = MMDynamicsClassifier(data.in_dims, 2, hidden=1000)
    objective = mmdynamics_objective(2)
    fit(model, data.x_train, data.y_train, None, None,
        TrainConfig(epochs=6, optimizer="adam", lr=1e-4, weight_decay=1e-4, schedule="step", step_size=500, gamma=0.2,
                    clip_norm=None, guard=None),
        *objective)
    assert evaluate(model, data.x_test, data.y_test, *objective) == res["test"]
    deq = json.loads((out / "mmdynamics-deq_f_max_iter-4_b_mode-phantom" / "seed0" / "result.json").read_text())
    assert deq["recipe"]["hidden"] == 300 and deq["recipe"]["growth"] == 1.5
    assert deq["recipe"]["fusion_options"] == {"injection": "sum", "f_max_iter": 4, "b_mode": "phantom"}
    assert 1 <= deq["solver_steps"] <= 4
    assert "no selection" in (out / "summary.md").read_text()
    config = json.loads((out / "config.json").read_text())  # the recipes as run, not the command's defaults
    assert config["settings"]["recipes"]["mmdynamics"] == exp_mmd.recipe("mmdynamics", "rosmap")
    assert config["settings"]["recipes"]["mmdynamics-deq"]["hidden"] == 300


def test_fixed_protocol_refuses_other_variants_and_test_scoring(shared_data_dir, tmp_path, short_recipes):
    base = ["omics", "--dataset", "rosmap", "--data-dir", str(shared_data_dir / "rosmap"), "--protocol", "fixed",
            "--seeds", "0", "--threads", "1", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "a"), "--fusion", "deq"]) == 2
    assert main([*base, "--out", str(tmp_path / "b"), "--fusion", "mmdynamics", "--reference-protocol"]) == 2
    assert main([*base, "--out", str(tmp_path / "c"), "--fusion", "mmdynamics:f_max_iter=3"]) == 2
    # options that would set what a recipe fixes are refused, not ignored
    for extra in (["--hidden", "300"], ["--epochs", "10"], ["--lr", "1e-3"], ["--lambda-jac", "5"],
                  ["--reference-settings"]):
        assert main([*base, "--out", str(tmp_path / "d"), "--fusion", "mmdynamics", *extra]) == 2
        assert not (tmp_path / "d").exists()


def test_fixed_protocol_trains_the_same_model_whatever_the_test_files_hold(shared_data_dir, tmp_path,
                                                                           short_recipes):
    # a copy of ROSMAP whose test files hold other values and flipped labels: if anything of the test files
    # reached training (scaling statistics, selection, a peek at test scores), the training record would change
    changed = tmp_path / "rosmap-other-test"
    shutil.copytree(shared_data_dir / "rosmap", changed)
    rng = np.random.default_rng(0)
    for v in (1, 2, 3):
        x = np.loadtxt(changed / f"{v}_te.csv", delimiter=",")
        np.savetxt(changed / f"{v}_te.csv", rng.uniform(-5.0, 5.0, size=x.shape), delimiter=",")
    y = np.loadtxt(changed / "labels_te.csv", delimiter=",")
    np.savetxt(changed / "labels_te.csv", 1.0 - y, delimiter=",")
    runs = {}
    for name, folder, verify in (("real", shared_data_dir / "rosmap", []), ("changed", changed, ["--no-verify"])):
        out = tmp_path / name
        assert main(["omics", "--dataset", "rosmap", "--data-dir", str(folder), "--out", str(out), *verify,
                     "--fusion", "mmdynamics", "--protocol", "fixed", "--seeds", "0", "--threads", "1",
                     "--no-progress"]) == 0
        runs[name] = (json.loads((out / "mmdynamics" / "seed0" / "result.json").read_text()),
                      torch.load(out / "mmdynamics" / "seed0" / "checkpoint.pt", weights_only=False))
    (real, real_ckpt), (other, other_ckpt) = runs["real"], runs["changed"]
    assert real_ckpt["state"]["history"] == other_ckpt["state"]["history"]  # per-epoch training losses
    for key, value in real_ckpt["model"].items():
        assert torch.equal(value, other_ckpt["model"][key]), key
    assert real["test"]["acc"] != other["test"]["acc"]  # the test files did differ, and were scored
