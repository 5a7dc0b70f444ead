import pytest
import torch

from deqfusion.fusion import baselines
from deqfusion.fusion.registry import available_fusions, build_fusion

NAMES = ["tensor", "lowrank", "mi_matrix"]


def _inputs(b=5, dims=(3, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, d, generator=g) for d in dims]


@pytest.mark.parametrize("name", NAMES)
def test_registered_and_shapes(name):
    assert name in available_fusions()
    fusion = build_fusion(name, in_dims=[3, 4], out_dim=6)
    fused, info = fusion(_inputs())
    assert fused.shape == (5, 6)
    assert float(info.jac_loss) == 0.0
    # gradients reach every parameter and both inputs
    xs = [x.requires_grad_() for x in _inputs()]
    fused, _ = fusion(xs)
    fused.square().sum().backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in xs)
    for pname, p in fusion.named_parameters():
        assert p.grad is not None, pname


@pytest.mark.parametrize("name", NAMES)
def test_three_modalities(name):
    fusion = build_fusion(name, in_dims=[2, 3, 4], out_dim=5)
    fused, _ = fusion(_inputs(dims=(2, 3, 4)))
    assert fused.shape == (5, 5)


def test_tensor_fusion_matches_explicit_outer_product():
    fusion = baselines.TensorFusion([2, 3], out_dim=4)
    x1, x2 = _inputs(b=3, dims=(2, 3))
    fused, _ = fusion([x1, x2])
    z1 = torch.cat([torch.ones(3, 1), x1], 1)
    z2 = torch.cat([torch.ones(3, 1), x2], 1)
    outer = torch.einsum("bi,bj->bij", z1, z2).reshape(3, -1)
    assert torch.allclose(fused, outer @ fusion.linear.weight.T + fusion.linear.bias, atol=1e-6)
    assert fusion.linear.in_features == 3 * 4


def test_tensor_fusion_too_big_is_refused():
    with pytest.raises(ValueError, match="lowrank"):
        baselines.TensorFusion([4096, 4096, 512], out_dim=512)


def test_lowrank_factors_are_parameters_and_formula():
    fusion = baselines.LowRankTensorFusion([2, 3], out_dim=4, rank=5)
    params = dict(fusion.named_parameters())
    assert params["factors.0"].shape == (5, 3, 4)
    assert params["factors.1"].shape == (5, 4, 4)
    assert "rank_weights" in params and "bias" in params
    assert set(fusion.state_dict()) >= {"factors.0", "factors.1", "rank_weights", "bias"}
    x1, x2 = _inputs(b=3, dims=(2, 3))
    fused, _ = fusion([x1, x2])
    z1 = torch.cat([torch.ones(3, 1), x1], 1)
    z2 = torch.cat([torch.ones(3, 1), x2], 1)
    expected = torch.zeros(3, 4)
    for r in range(5):
        expected += fusion.rank_weights[r] * (z1 @ fusion.factors[0][r]) * (z2 @ fusion.factors[1][r])
    assert torch.allclose(fused, expected + fusion.bias, atol=1e-5)
    # a full-rank weight tensor equals the sum of the rank-1 terms: check against the tensor-fusion form
    full = torch.einsum("r,rio,rjo->ijo", fusion.rank_weights, fusion.factors[0], fusion.factors[1])
    assert torch.allclose(fused, torch.einsum("bi,bj,ijo->bo", z1, z2, full) + fusion.bias, atol=1e-5)


def test_lowrank_bad_rank():
    with pytest.raises(ValueError, match="rank"):
        build_fusion("lowrank", in_dims=[2, 3], out_dim=4, rank=0)


def test_mi_matrix_formula():
    fusion = baselines.MIMatrixFusion([2, 3], out_dim=4)
    pair = fusion.pairs[0]
    x1, x2 = _inputs(b=3, dims=(2, 3))
    fused, _ = fusion([x1, x2])
    expected = torch.einsum("bi,ijo,bj->bo", x1, pair.weight, x2) + x1 @ pair.u + x2 @ pair.v + pair.bias
    assert torch.allclose(fused, expected, atol=1e-5)
    assert pair.weight.shape == (2, 3, 4)


@pytest.mark.parametrize("name", NAMES)
def test_absent_modality_is_zero_imputed(name):
    fusion = build_fusion(name, in_dims=[3, 4], out_dim=6, names=["text", "image"])
    x1, x2 = _inputs()
    by_none, _ = fusion([x1, None])
    by_zeros, _ = fusion([x1, torch.zeros_like(x2)])
    assert torch.allclose(by_none, by_zeros)
    by_dict, _ = fusion({"text": x1, "image": None})
    assert torch.allclose(by_dict, by_zeros)
    # per-sample mask: masked rows equal the zero-imputed result, others the full one
    mask = torch.tensor([[True, True], [True, False], [True, True], [False, True], [True, True]])
    masked, _ = fusion([x1, x2], mask=mask)
    full, _ = fusion([x1, x2])
    only_text, _ = fusion([x1, torch.zeros_like(x2)])
    only_image, _ = fusion([torch.zeros_like(x1), x2])
    assert torch.allclose(masked[[0, 2, 4]], full[[0, 2, 4]])
    assert torch.allclose(masked[1], only_text[1])
    assert torch.allclose(masked[3], only_image[3])
    assert not torch.allclose(masked[1], full[1])


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_rejected(name):
    fusion = build_fusion(name, in_dims=[3, 4], out_dim=6)
    x1, x2 = _inputs()
    with pytest.raises(ValueError, match="dimension 1 should be 4"):
        fusion([x1, x2[:, :3]])
    with pytest.raises(ValueError, match="expected 2 modalities"):
        fusion([x1, x2, x2])
    with pytest.raises(ValueError, match="out_dim"):
        build_fusion(name, in_dims=[3, 4], out_dim=0)


@pytest.mark.parametrize("name", NAMES)
def test_follows_input_dtype(name):
    fusion = build_fusion(name, in_dims=[3, 4], out_dim=6).double()
    fused, info = fusion([x.double() for x in _inputs()])
    assert fused.dtype == torch.float64 and info.jac_loss.dtype == torch.float64


@pytest.mark.parametrize("name", NAMES)
def test_can_fit_a_multiplicative_target(name):
    # the product x1 * x2 (per coordinate) is what these fusions can express and a sum cannot
    torch.manual_seed(0)
    fusion = build_fusion(name, in_dims=[3, 3], out_dim=3)
    x1, x2 = _inputs(b=64, dims=(3, 3), seed=1)
    target = x1 * x2
    opt = torch.optim.Adam(fusion.parameters(), lr=3e-2)
    first = None
    for _ in range(150):
        loss = (fusion([x1, x2])[0] - target).square().mean()
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.1 * first
