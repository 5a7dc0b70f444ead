import csv
import json

import pytest
import torch

from deqfusion.cli import main
from deqfusion.data.mixomics import load_mixomics
from deqfusion.fusion.registry import FusionFactory
from deqfusion.metrics.classification import classification_metrics
from deqfusion.models.omics import OmicsClassifier
from deqfusion.training.checkpoint import load_checkpoint
from deqfusion.training.data import stratified_split

FAST = ["--epochs", "6", "--eval-every", "3", "--hidden", "16", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def finished(shared_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("missing") / "run"
    argv = ["missing", "--data-dir", str(shared_data_dir), "--out", str(out), "--seeds", "0",
            "--methods", "deq-dropout", "deq-2mod", "concat-zero", *FAST]
    assert main(argv) == 0
    return out, argv


def test_outputs(finished, capsys):
    out, _ = finished
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["data"]["test_missing"] == ["protein"] and cfg["data"]["n_test"] == 70
    methods = {v["label"]: v for v in cfg["variants"]}
    assert methods["deq-dropout"]["modality_dropout"] == 0.3
    assert methods["deq-2mod"]["modalities"] == ["mrna", "mirna"]
    assert methods["deq-2mod"]["options"] == {"injection": "sum"}  # the library's DEQ defaults
    rows = list(csv.DictReader((out / "per_seed.csv").open()))
    assert [(r["label"], r["seed"]) for r in rows] == [
        (m, "0") for m in ("deq-dropout", "deq-2mod", "concat-zero")]
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert summary["concat-zero"]["test_acc"]["values"] == [
        float(r["test_acc"]) for r in rows if r["label"] == "concat-zero"]
    md = (out / "summary.md").read_text()
    assert "without protein" in md and "deq-dropout" in md
    for m in ("deq-dropout", "deq-2mod", "concat-zero"):
        res = json.loads((out / m / "seed0" / "result.json").read_text())
        assert res["test_modalities"] == ["mrna", "mirna"] and res["n_test"] == 70
        assert 0.0 <= res["test"]["acc"] <= 1.0


@pytest.mark.parametrize("method", ["deq-dropout", "concat-zero"])
def test_test_scores_come_from_the_selected_model_with_protein_absent(finished, shared_data_dir, method):
    out, _ = finished
    res = json.loads((out / method / "seed0" / "result.json").read_text())
    config = json.loads((out / "config.json").read_text())
    cfg = config["settings"]
    spec = next(v for v in config["variants"] if v["label"] == method)
    data = load_mixomics(shared_data_dir, test_missing=("protein",))
    fit_idx, _ = stratified_split(data.y_train, cfg["val_fraction"], 0)
    scaled = data.minmax_scaled(fit_idx)
    model = OmicsClassifier([200, 184, 142], 3, hidden=16, fusion=FusionFactory(spec["fusion"], **spec["options"]),
                            feature_norm="layer", modality_dropout=spec["modality_dropout"])
    model.load_state_dict(load_checkpoint(out / method / "seed0" / "checkpoint.pt")["best"]["model"])
    model.eval()
    absent = torch.tensor([[True, True, False]]).expand(70, 3)
    with torch.no_grad():
        probs = model([scaled.x_test["mrna"], scaled.x_test["mirna"], None]).probs()
        masked = model([scaled.x_test["mrna"], scaled.x_test["mirna"], torch.rand(70, 142)], mask=absent).probs()
    assert classification_metrics(data.y_test, probs, 3)["acc"] == pytest.approx(res["test"]["acc"])
    assert torch.allclose(probs, masked, atol=1e-6)  # whatever stands in for the protein is never used


def test_resume_and_refusals(finished, capsys):
    out, argv = finished
    before = (out / "per_seed.csv").read_text()
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0  # finished runs are reused
    assert (out / "per_seed.csv").read_text() == before
    assert main(argv + ["--resume", "--lr", "0.5"]) == 2
    assert "other settings (settings.train.lr)" in capsys.readouterr().err
