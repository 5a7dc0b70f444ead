"""DEQFusion refuses what it cannot handle correctly, with a message saying what to do instead."""

import logging

import pytest
import torch
from torch import nn

from deqfusion import DEQFusion


def _xs(dtype=torch.float32, b=4):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(b, 5, generator=g).to(dtype), torch.randn(b, 8, generator=g).to(dtype)]


def test_input_and_parameter_dtypes_must_match():
    m = DEQFusion([5, 8], 8)
    with pytest.raises(TypeError, match=r"inputs are torch.float64 but DEQFusion's parameters are torch.float32"):
        m(_xs(torch.float64))
    out, _ = m.double()(_xs(torch.float64))
    assert out.dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_refused_with_what_to_do(dtype):
    m = DEQFusion([5, 8], 8).to(dtype)
    with pytest.raises(TypeError, match="solves in float32 or float64.*float32"):
        m(_xs(dtype))


def test_float_masks_are_refused_not_cast():
    m = DEQFusion([5, 8], 8)
    xs = _xs()
    with pytest.raises(TypeError, match="float mask is not cast"):
        m(xs, mask=torch.full((4, 2), 0.5))
    with pytest.raises(ValueError, match="only 0 .absent. and 1 .present."):
        m(xs, mask=torch.full((4, 2), 2))
    mask = torch.tensor([[1, 1], [1, 0], [0, 1], [1, 1]])
    out_int, _ = m(xs, mask=mask)
    out_bool, _ = m(xs, mask=mask.bool())
    assert torch.equal(out_int, out_bool)


class _UserModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.ModuleList([nn.Linear(6, 8), nn.Linear(5, 8)])
        self.fusion = DEQFusion([8, 8], 8)
        self.head = nn.Linear(8, 2)

    def forward(self, a, b):
        z, info = self.fusion([torch.relu(self.enc[0](a)), torch.relu(self.enc[1](b))])
        return self.head(z), info.jac_loss


def test_torch_compile_of_a_training_step_with_the_jacobian_loss():
    # the fusion runs eagerly inside a compiled model (the solver loop and the penalty's double backward cannot be
    # compiled); the rest is compiled and the step gives the eager gradients
    torch.manual_seed(0)
    model = _UserModel()
    a, b, y = torch.randn(4, 6), torch.randn(4, 5), torch.tensor([0, 1, 0, 1])

    def step(mod):
        model.zero_grad()
        torch.manual_seed(1)  # the Jacobian probes
        out, jac = mod(a, b)
        (nn.functional.cross_entropy(out, y) + 10.0 * jac).backward()
        return [p.grad.clone() for p in model.parameters()]

    eager = step(model)
    compiled = step(torch.compile(model, backend="aot_eager"))
    for g1, g2 in zip(compiled, eager):
        torch.testing.assert_close(g1, g2)


def test_on_nonfinite_return_says_what_it_returned(caplog):
    torch.manual_seed(0)
    m = DEQFusion([5, 8], 8, on_nonfinite="return")
    with torch.no_grad():
        m.fusion.fuse_weight.fill_(float("inf"))
    with caplog.at_level(logging.WARNING):
        out, info = m(_xs())
    assert info.forward.status == "nonfinite"
    assert torch.isfinite(info.forward.z).all()  # the iterates returned are finite ...
    bad = ~torch.isfinite(out).all(1)  # ... but their images are not, and the warning says so
    assert int(bad.sum()) == 4 and "4 of 4 outputs are not finite" in caplog.text
    assert "non-finite values in 4 of 4 samples" in caplog.text
    # a map that is finite for some samples: those outputs are finite and the count says how many are not
    m2 = DEQFusion([5, 8], 8, on_nonfinite="return")
    xs = _xs()
    xs[0][:2] *= 1e38  # overflows in the injection for two samples only
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        out2, info2 = m2(xs)
    n_bad = int((~torch.isfinite(out2).all(1)).sum())
    assert 0 < n_bad < 4 and f"{n_bad} of 4 outputs are not finite" in caplog.text
