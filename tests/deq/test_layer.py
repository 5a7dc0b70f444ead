import argparse

import pytest
import torch

from deqfusion.deq import defaults as D
from deqfusion.deq.backward import deq_forward
from deqfusion.deq.layer import OPTIONS, DEQLayer
from deqfusion.errors import DEQDivergenceError


def small_problem(seed=0, bsz=4, n=6):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n, n, generator=g, dtype=torch.float64)
    W = (0.6 * W / torch.linalg.matrix_norm(W, ord=2)).requires_grad_()
    x = torch.randn(bsz, n, generator=g, dtype=torch.float64, requires_grad=True)
    return (lambda z: torch.tanh(z @ W.T + x)), W, x


def test_defaults_are_the_library_defaults():
    layer = DEQLayer()
    assert layer.options == OPTIONS
    assert {k: layer.options[k] for k in D.DEFAULTS} == D.DEFAULTS
    assert layer.f_max_iter == D.F_MAX_ITER and layer.b_tol == D.B_TOL and layer.jac_n_probes == D.JAC_N_PROBES
    assert layer.anderson_kwargs == dict(m=D.ANDERSON_M, lam=D.ANDERSON_LAM, beta=D.ANDERSON_BETA)


def test_layer_equals_deq_forward_with_the_same_options():
    f, W, x = small_problem()
    layer = DEQLayer(f_tol=1e-10, f_max_iter=100, b_tol=1e-10, b_max_iter=100, jac_n_probes=0)
    out = layer(f, torch.zeros_like(x))
    ref = deq_forward(f, torch.zeros_like(x), f_tol=1e-10, f_max_iter=100, b_tol=1e-10, b_max_iter=100)
    assert torch.equal(out.z, ref.z) and out.forward.nstep == ref.forward.nstep
    g1 = torch.autograd.grad(out.z.sum(), W)[0]
    g2 = torch.autograd.grad(ref.z.sum(), W)[0]
    assert torch.equal(g1, g2)
    assert float(out.jac_loss) == 0.0


def test_jacobian_penalty_in_training_only():
    f, W, x = small_problem()
    layer = DEQLayer(jac_n_probes=2)
    torch.manual_seed(0)
    out = layer(f, torch.zeros_like(x))
    assert out.jac_loss.requires_grad and float(out.jac_loss.detach()) > 0
    layer.eval()
    assert float(layer(f, torch.zeros_like(x)).jac_loss) == 0.0
    layer.set_options(jac_in_eval=True)
    assert float(layer(f, torch.zeros_like(x)).jac_loss) > 0


def test_override_switches_for_the_block_and_restores_even_on_error():
    f, W, x = small_problem()
    layer = DEQLayer()
    with layer.override(b_mode="phantom", phantom_steps=3, on_nonfinite="return"):
        assert layer.b_mode == "phantom" and layer.on_nonfinite == "return"
        out = layer(f, torch.zeros_like(x))
        out.z.sum().backward()
        assert out.backward.mode == "phantom" and out.backward.nstep == 3
    assert layer.options == OPTIONS
    with pytest.raises(RuntimeError, match="inside"):
        with layer.override(b_mode="phantom"):
            raise RuntimeError("inside")
    assert layer.b_mode == "implicit"
    with pytest.raises(ValueError, match="b_mode"):
        with layer.override(b_mode="adjoint"):
            pass
    with pytest.raises(TypeError, match="unknown DEQ option"):
        with layer.override(f_tolerance=1e-3):
            pass
    assert layer.options == OPTIONS


@pytest.mark.parametrize("bad,match", [
    (dict(f_solver="newton"), "f_solver"), (dict(f_max_iter=0), "f_max_iter"), (dict(b_tol=-1), "b_tol"),
    (dict(phantom_tau=1.5), "phantom_tau"), (dict(jac_n_probes=-1), "jac_n_probes"),
    (dict(on_nonfinite="ignore"), "on_nonfinite"), (dict(anderson_m=0), "anderson_m"),
])
def test_bad_options_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        DEQLayer(**bad)


def test_nonfinite_raises_or_returns(caplog):
    x = torch.randn(3, 4)
    f = lambda z: torch.where(z == 0, x, z * float("inf"))  # noqa: E731 - f(0) = x, then inf from the next iterate
    with pytest.raises(DEQDivergenceError, match="non-finite values in 3 of 3"):
        DEQLayer()(f, torch.zeros_like(x))
    with caplog.at_level("WARNING"):
        out = DEQLayer(on_nonfinite="return")(f, torch.zeros_like(x))
    assert torch.equal(out.forward.z, torch.zeros_like(x)) and torch.equal(out.z.detach(), x)
    assert "lowest-residual finite iterates (every output is finite)" in caplog.text
    # no finite iterate at all: the output is NaN and the message says so instead of claiming finite iterates
    caplog.clear()
    with caplog.at_level("WARNING"):
        out = DEQLayer(on_nonfinite="return")(lambda z: z + float("nan"), torch.zeros_like(x))
    assert torch.isnan(out.z).all()
    assert "3 of 3 outputs are not finite" in caplog.text


def test_argument_helper_round_trip():
    parser = argparse.ArgumentParser()
    DEQLayer.add_arguments(parser, defaults={"f_max_iter": 50})
    args = parser.parse_args([])
    assert DEQLayer.options_from_args(args) == dict(OPTIONS, f_max_iter=50)
    args = parser.parse_args(["--f-tol", "1e-5", "--b-mode", "phantom", "--jac-in-eval", "--anderson-m", "3"])
    layer = DEQLayer.from_args(args)
    assert layer.f_tol == 1e-5 and layer.b_mode == "phantom" and layer.jac_in_eval and layer.anderson_m == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--b-mode", "adjoint"])
    prefixed = argparse.ArgumentParser()
    DEQLayer.add_arguments(prefixed, prefix="deq-")
    args = prefixed.parse_args(["--deq-f-max-iter", "7"])
    assert DEQLayer.options_from_args(args, prefix="deq-")["f_max_iter"] == 7
