import pytest
import torch

from deqfusion.data.mosi import load_mosi_features, standardize
from deqfusion.experiments.mosi_objective import parse_subset, split_tensors, subset_label
from deqfusion.fusion.registry import FusionFactory
from deqfusion.models.mosi_features import MosiFeatureModel

DIMS = {"text": 100, "audio": 73, "video": 100}


@pytest.fixture(scope="module")
def real_batch(shared_data_dir):
    data = standardize(load_mosi_features(shared_data_dir))
    t = split_tensors(data.splits["train"], list(DIMS))
    return {k: v[:96] for k, v in t.items()}


@pytest.mark.parametrize(
    ("fusion", "options"),
    [("deq", {"f_max_iter": 15, "b_max_iter": 15}), ("unrolled", {"unrolled_steps": 3}), ("concat", {}),
     ("tensor", {}), ("lowrank", {"rank": 4})],
)
def test_short_training_on_real_features_loss_falls(real_batch, fusion, options):
    torch.manual_seed(0)
    model = MosiFeatureModel(DIMS, fusion=FusionFactory(fusion, **options), hidden=16, dropout=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    feats = {m: real_batch[m] for m in DIMS}
    y = real_batch["labels"]
    losses = []
    for _ in range(35):
        pred, info = model(feats)
        loss = (pred - y).abs().mean() + 0.01 * info.jac_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert pred.shape == (96,)
    # the training loss falls, well below that of the best constant prediction (the median)
    best_constant = float((y - y.median()).abs().mean())
    assert min(losses[-5:]) < 0.8 * losses[0] and min(losses[-5:]) < 0.8 * best_constant
    assert (info.forward is not None) == (fusion in ("deq", "unrolled"))


def test_single_modality_has_no_fusion_and_checks_inputs():
    m = MosiFeatureModel({"audio": 73}, fusion="deq", hidden=8)
    assert m.fusion is None and m.fusion_name == "none"
    pred, info = m({"audio": torch.randn(4, 73)})
    assert pred.shape == (4,) and float(info.jac_loss) == 0.0
    with pytest.raises(ValueError, match="missing modality"):
        MosiFeatureModel({"text": 5, "audio": 3}, fusion="concat", hidden=8)({"text": torch.randn(2, 5)})
    with pytest.raises(ValueError, match="unknown fusion"):
        MosiFeatureModel({"text": 5, "audio": 3}, fusion="nope", hidden=8)
    assert m.predict({"audio": torch.randn(3, 73)}).shape == (3,) and m.training


def test_subset_names():
    assert parse_subset("T+A+V") == ["text", "audio", "video"]
    assert parse_subset("VT") == ["text", "video"]
    assert parse_subset("audio,text") == ["text", "audio"]
    assert subset_label(["text", "video"]) == "T+V"
    for bad in ["", "T+X", "T+T"]:
        with pytest.raises(ValueError):
            parse_subset(bad)
