import pytest
import torch

from deqfusion.experiments.mmimdb import mmimdb_step_fn
from deqfusion.fusion.registry import FusionFactory
from deqfusion.models.mmimdb import (
    EarlyFusionModel,
    MMIMDBModel,
    build_mmimdb_model,
    mmimdb_model_names,
)
from deqfusion.training.trainer import StepOutput

from ..data.mmimdb_files import make_arrays

#: every method of the MM-IMDB table, with small solver budgets so that the tests stay fast
METHODS = [
    ("early", {}),
    ("concat", {}),
    ("sum", {}),
    ("tensor", {}),
    ("lowrank", {"rank": 4}),
    ("mi_matrix", {}),
    ("unrolled", {"unrolled_steps": 3}),
    ("deq", {"f_max_iter": 12, "b_mode": "phantom", "phantom_steps": 2}),
    ("deq", {"f_max_iter": 12, "b_max_iter": 12}),
]


def _data(n=96, seed=0):
    text, image, genres = make_arrays(n, seed, mark_rows=False)
    return {"text": torch.from_numpy(text), "image": torch.from_numpy(image),
            "labels": torch.from_numpy(genres).float()}


def test_names_and_errors():
    names = mmimdb_model_names()
    assert names[0] == "early" and {"deq", "concat", "tensor", "lowrank", "mi_matrix", "unrolled"} <= set(names)
    with pytest.raises(ValueError, match="unknown fusion"):
        build_mmimdb_model("attention")
    with pytest.raises(ValueError, match=r"no option\(s\) \['rnk'\]"):
        build_mmimdb_model(FusionFactory("lowrank", rnk=3))


def test_fusion_built_with_the_options_given():
    model = build_mmimdb_model(FusionFactory("deq", fusion_norm="gn_relu"), hidden=16)
    assert model.fusion.fusion.norm_order == "gn_relu"
    assert build_mmimdb_model("deq", hidden=16).fusion.fusion.norm_order == "relu_gn"  # the library's default


def test_default_sizes_follow_the_spec():
    model = build_mmimdb_model("concat")
    assert isinstance(model, MMIMDBModel)
    assert model.text_encoder.in_dim == 300 and model.text_encoder.out_dim == 512
    assert model.image_encoder.in_dim == 4096 and model.image_encoder.out_dim == 512
    assert model.fusion.in_dims == [512, 512] and model.fusion.names == ["text", "image"]
    assert tuple(model.head.weight.shape) == (23, 512)
    early = build_mmimdb_model("early")
    assert isinstance(early, EarlyFusionModel) and early.encoder.in_dim == 4396
    lowrank = build_mmimdb_model("lowrank")
    assert lowrank.fusion.rank == 128


@pytest.mark.parametrize("name, options", METHODS, ids=[f"{n}{'-' if o else ''}{'-'.join(o)}" for n, o in METHODS])
def test_short_training_run_lowers_the_loss(name, options):
    torch.manual_seed(0)
    model = build_mmimdb_model(FusionFactory(name, **options) if name != "early" else name, hidden=16,
                               dropout=0.0)
    data = _data()
    step = mmimdb_step_fn(lambda_jac=0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(30):
        out = step(model, data, True)
        assert isinstance(out, StepOutput) and out.predictions.shape == (96, 23)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.logs["bce"]))
    assert losses[-1] < 0.85 * losses[0], losses
    if name == "deq":
        assert "solver_steps" in out.logs and float(out.logs["jac_loss"]) > 0
    model.eval()
    with torch.no_grad():
        logits, info = model(data["text"][:5], data["image"][:5])
    assert logits.shape == (5, 23) and torch.isfinite(logits).all()


def test_early_fusion_mask_zero_imputes():
    torch.manual_seed(0)
    model = build_mmimdb_model("early", hidden=8).eval()
    data = _data(8)
    mask = torch.ones(8, 2, dtype=torch.bool)
    mask[:4, 1] = False
    masked, _ = model(data["text"], data["image"], mask=mask)
    zeroed = data["image"].clone()
    zeroed[:4] = 0
    expected, _ = model(data["text"], zeroed)
    assert torch.allclose(masked, expected, atol=1e-6)
    with pytest.raises(ValueError, match="one batch size"):
        model(data["text"], data["image"][:3])


def test_fusion_model_mask_reaches_the_fusion():
    torch.manual_seed(0)
    model = build_mmimdb_model("concat", hidden=8).eval()
    data = _data(6)
    mask = torch.tensor([[True, False]] * 6)
    masked, _ = model(data["text"], data["image"], mask=mask)
    full, _ = model(data["text"], data["image"])
    assert not torch.allclose(masked, full)
    step = mmimdb_step_fn(0.0)(model, {**data, "mask": mask}, False)
    assert torch.allclose(step.predictions, masked)
