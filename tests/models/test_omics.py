import pytest
import torch
import torch.nn.functional as F

from deqfusion.fusion import DEQFusion
from deqfusion.fusion.registry import FusionFactory
from deqfusion.models.omics import OmicsClassifier, omics_loss


def _inputs(b=10, dims=(7, 5, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, d, generator=g) for d in dims], torch.arange(b) % 3


@pytest.mark.parametrize("fusion", ["deq", "unrolled", "concat", "sum", "lowrank"])
def test_every_fusion_runs_forward_and_backward(fusion):
    torch.manual_seed(0)
    opts = {"f_max_iter": 6, "b_max_iter": 6} if fusion == "deq" else {}
    model = OmicsClassifier([7, 5, 6], 3, hidden=8, fusion=FusionFactory(fusion, **(opts or {})))
    xs, y = _inputs()
    out = model(xs)
    assert out.logits.shape == (10, 3)
    assert [t.shape for t in out.modality_logits] == [(10, 3)] * 3
    assert [t.shape for t in out.confidences] == [(10, 1)] * 3
    assert [t.shape for t in out.feature_info] == [(10, 7), (10, 5), (10, 6)]
    assert all(((fi > 0) & (fi < 1)).all() for fi in out.feature_info)
    loss, parts = omics_loss(out, y, lambda_jac=20.0)
    assert torch.isfinite(loss) and set(parts) == {"loss", "ce", "confidence", "jac"}
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in model.fusion.parameters() if g is not None)
    probs = out.probs()
    assert torch.allclose(probs.sum(1), torch.ones(10))


def test_fusion_is_built_with_the_options_given():
    model = OmicsClassifier([4, 4], 2, hidden=8,
                            fusion=FusionFactory("deq", f_max_iter=3, unimodal=False, injection="sum"))
    assert model.fusion.unimodal is False and model.fusion.injection == "sum"
    assert model.fusion_name == "deq"
    built = DEQFusion([8, 8], 8, unimodal=False)  # a built module of the model's widths is used as it is
    assert OmicsClassifier([4, 4], 2, hidden=8, fusion=built).fusion is built
    with pytest.raises(ValueError, match=r"no option\(s\) \['f_maxiter'\]"):
        FusionFactory("deq", f_maxiter=3)
    assert OmicsClassifier([4, 4], 2, hidden=8, fusion="deq").fusion.injection == "weighted"
    with pytest.raises(ValueError, match="unknown fusion"):
        OmicsClassifier([4, 4], 2, hidden=8, fusion="nonsense")


def test_backbone_init_and_input_checks():
    model = OmicsClassifier([7, 5, 6], 3, hidden=8, fusion="concat")
    for lin in [*model.encoders, *model.informativeness, model.classifier]:
        assert torch.count_nonzero(lin.bias) == 0
    with pytest.raises(ValueError, match="expected 3 modalities"):
        model(_inputs()[0][:2])
    with pytest.raises(ValueError, match=r"modality 1 should have shape \(B, 5\)"):
        model([torch.rand(2, 7), torch.rand(2, 4), torch.rand(2, 6)])
    with pytest.raises(ValueError, match="at least 2 modalities"):
        OmicsClassifier([7], 3)


def test_loss_matches_the_reference_formula():
    torch.manual_seed(0)
    model = OmicsClassifier([7, 5, 6], 3, hidden=8, fusion="concat").eval()
    xs, y = _inputs()
    out = model(xs)
    expected = F.cross_entropy(out.logits, y)
    for v in range(3):
        expected = 1.5 * expected + out.feature_info[v].mean()
        p = torch.softmax(out.modality_logits[v], 1)[torch.arange(10), y]
        expected = expected + F.mse_loss(out.confidences[v].view(-1), p)
        expected = expected + F.cross_entropy(out.modality_logits[v], y)
    loss, parts = omics_loss(out, y, lambda_jac=20.0)
    assert torch.allclose(loss, expected)
    assert parts["jac"] == 0.0


def test_jacobian_term_enters_the_loss_in_training():
    torch.manual_seed(0)
    model = OmicsClassifier([7, 5, 6], 3, hidden=8, fusion=FusionFactory("deq", f_max_iter=6))
    xs, y = _inputs()
    out = model(xs)
    l0, p0 = omics_loss(out, y, lambda_jac=0.0)
    l1, p1 = omics_loss(out, y, lambda_jac=20.0)
    assert p1["jac"] > 0
    assert torch.allclose(l1 - l0, 20.0 * out.info.jac_loss)
    model.eval()
    with torch.no_grad():
        assert float(model(xs).info.jac_loss) == 0.0


def test_feature_norm_layer_keeps_the_confidence_weighting():
    torch.manual_seed(0)
    model = OmicsClassifier([7, 5, 6], 3, hidden=8, fusion="concat", feature_norm="layer").eval()
    seen = {}

    def hook(mod, inp, out):
        seen["feats"] = inp[0]

    model.fusion.register_forward_hook(hook)
    xs, _ = _inputs()
    out = model(xs)
    for v in range(3):
        h = torch.relu(model.encoders[v](xs[v] * out.feature_info[v]))
        expected = torch.nn.functional.layer_norm(h, (8,)) * out.confidences[v]
        assert torch.allclose(seen["feats"][v], expected, atol=1e-6)
    with pytest.raises(ValueError, match="feature_norm"):
        OmicsClassifier([7, 5], 3, hidden=8, fusion="concat", feature_norm="batch")
