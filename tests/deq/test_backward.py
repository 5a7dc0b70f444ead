import pytest
import torch

from deqfusion.deq.backward import SOLVE_OPTIONS, deq_forward, unrolled_forward
from deqfusion.deq.defaults import DEFAULTS


def small_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    n = 6
    W = torch.randn(n, n, generator=g, dtype=torch.float64)
    W = (0.6 * W / torch.linalg.matrix_norm(W, ord=2)).requires_grad_()
    x = torch.randn(4, n, generator=g, dtype=torch.float64, requires_grad=True)
    f = lambda z: torch.tanh(z @ W.T + x)
    return f, W, x


def reference_grads(W, x, weights, steps=300):
    # ordinary backprop through a long unrolled iteration, which has converged to machine precision
    z = torch.zeros_like(x)
    for _ in range(steps):
        z = torch.tanh(z @ W.T + x)
    return torch.autograd.grad((z * weights).sum(), (W, x))


@pytest.mark.parametrize("b_solver", ["anderson", "broyden", "fixed_point_iter"])
def test_implicit_gradient_matches_unrolled_backprop(b_solver):
    f, W, x = small_problem()
    weights = torch.randn(4, 6, dtype=torch.float64)
    out = deq_forward(f, torch.zeros_like(x), f_tol=1e-13, f_max_iter=300, b_solver=b_solver, b_tol=1e-13,
                      b_max_iter=300)
    gW, gx = torch.autograd.grad((out.z * weights).sum(), (W, x))
    rW, rx = reference_grads(W, x, weights)
    assert torch.allclose(gW, rW, rtol=1e-8, atol=1e-10)
    assert torch.allclose(gx, rx, rtol=1e-8, atol=1e-10)
    assert out.backward.ran and out.backward.status == "converged"


def test_phantom_gradient_approximates_and_unrolled_is_exact_backprop():
    f, W, x = small_problem()
    weights = torch.randn(4, 6, dtype=torch.float64)
    rW, _ = reference_grads(W, x, weights)
    out = deq_forward(f, torch.zeros_like(x), f_tol=1e-12, b_mode="phantom", phantom_steps=8, phantom_tau=0.9)
    (gW,) = torch.autograd.grad((out.z * weights).sum(), W)
    cos = torch.nn.functional.cosine_similarity(gW.flatten(), rW.flatten(), dim=0)
    assert cos > 0.9
    assert out.backward.ran and out.backward.nstep == 8
    z, trace = unrolled_forward(f, torch.zeros_like(x), 300)
    (gu,) = torch.autograd.grad((z * weights).sum(), W)
    assert torch.allclose(gu, rW)
    assert trace.shape == (300, 4) and trace[-1].max() < 1e-12


def test_no_graph_under_no_grad():
    f, W, x = small_problem()
    with torch.no_grad():
        out = deq_forward(f, torch.zeros_like(x), f_tol=1e-10)
    assert not out.z.requires_grad and out.backward is None
    assert torch.allclose(out.z, f(out.forward.z))


def test_bad_modes():
    f, W, x = small_problem()
    with pytest.raises(ValueError, match="b_mode"):
        deq_forward(f, torch.zeros_like(x), b_mode="exact")
    with pytest.raises(ValueError, match="phantom_steps"):
        deq_forward(f, torch.zeros_like(x), b_mode="phantom", phantom_steps=0)


def test_deq_forward_refuses_an_unknown_option_and_names_the_known_ones():
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['f_maxiter'\].*'f_max_iter'"):
        deq_forward(lambda z: 0.5 * z, torch.zeros(2, 3), f_maxiter=5)
    assert set(SOLVE_OPTIONS) <= set(DEFAULTS) and all(SOLVE_OPTIONS[k] == DEFAULTS[k] for k in SOLVE_OPTIONS)
