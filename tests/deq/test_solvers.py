import math

import pytest
import torch

from deqfusion.deq.solvers import anderson, broyden, fixed_point_iter, get_solver, solve

SOLVERS = ["anderson", "broyden", "fixed_point_iter"]


def affine_problem(bsz=5, n=12, rho=0.8, seed=0, dtype=torch.float64):
    """Per-sample contractive affine maps f_b(z) = A_b z + c_b with spectral norm rho; closed-form fixed points."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(bsz, n, n, generator=g, dtype=dtype)
    A = rho * A / torch.linalg.matrix_norm(A, ord=2)[:, None, None]
    c = torch.randn(bsz, n, generator=g, dtype=dtype)
    z_star = torch.linalg.solve(torch.eye(n, dtype=dtype) - A, c)
    return (lambda z: torch.einsum("bij,bj->bi", A, z) + c), z_star


@pytest.mark.parametrize("name", SOLVERS)
def test_reaches_closed_form_fixed_point(name):
    f, z_star = affine_problem()
    res = solve(f, torch.zeros_like(z_star), solver=name, max_iter=300, tol=1e-11)
    assert res.status == "converged"
    assert bool(res.converged.all())
    err = (res.z - z_star).norm(dim=1) / z_star.norm(dim=1)
    assert err.max() < 1e-9
    assert torch.allclose(res.fz, f(res.z))
    assert res.rel_trace.shape == (res.nstep, 5)
    assert res.rel_residual.max() <= 1e-11


def test_anderson_and_broyden_need_fewer_evaluations_than_plain_iteration():
    # symmetric map with eigenvalues in [0, 0.98]: plain iteration contracts by only 0.98 per step
    g = torch.Generator().manual_seed(1)
    n = 30
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.linspace(0, 0.98, n, dtype=torch.float64)) @ Q.T
    c = torch.randn(3, n, generator=g, dtype=torch.float64)
    f = lambda z: z @ A.T + c
    z0 = torch.zeros_like(c)
    plain = fixed_point_iter(f, z0, max_iter=2000, tol=1e-8)
    acc = anderson(f, z0, max_iter=2000, tol=1e-8)
    bro = broyden(f, z0, max_iter=2000, tol=1e-8)
    assert plain.status == acc.status == bro.status == "converged"
    assert acc.nstep < plain.nstep / 5, (acc.nstep, plain.nstep)
    assert bro.nstep < plain.nstep / 5, (bro.nstep, plain.nstep)
    z_star = torch.linalg.solve(torch.eye(n, dtype=torch.float64) - A, c.T).T
    for res in (plain, acc, bro):
        # error <= residual / (1 - 0.98)
        assert ((res.z - z_star).norm(dim=1) / z_star.norm(dim=1)).max() < 1e-6 / (1 - 0.98)


def test_any_state_shape_and_nonlinear_map():
    torch.manual_seed(0)
    W = 0.3 * torch.randn(4 * 3 * 5, 4 * 3 * 5, dtype=torch.float64) / math.sqrt(60)
    x = torch.randn(7, 4, 3, 5, dtype=torch.float64)
    f = lambda z: torch.tanh((z.flatten(1) @ W.T).view_as(z) + x)
    for name in SOLVERS:
        res = solve(f, torch.zeros_like(x), solver=name, max_iter=200, tol=1e-10)
        assert res.z.shape == x.shape
        assert torch.allclose(f(res.z), res.z, atol=1e-8), name


def test_early_exit_and_batch_size_independence():
    f, z_star = affine_problem(bsz=8)
    res_all = anderson(f, torch.zeros_like(z_star), max_iter=105, tol=1e-6)
    assert res_all.nstep < 105
    # one sample on its own: same stopping rule, answer within tolerance of the batched one
    f1, _ = affine_problem(bsz=8)
    single = anderson(lambda z: f1(z.expand(8, -1))[:1], torch.zeros(1, 12, dtype=torch.float64),
                      max_iter=105, tol=1e-6)
    assert single.rel_residual.item() <= 1e-6
    assert torch.allclose(single.z[0], res_all.z[0], rtol=1e-4, atol=1e-5)


def test_returns_lowest_residual_iterate_when_diverging():
    # f(z) = 2 z + 1 is expanding: iterating from 0 moves away from the fixed point -1
    f = lambda z: 2 * z + 1
    z0 = torch.zeros(3, 4, dtype=torch.float64)
    res = fixed_point_iter(f, z0, max_iter=10, tol=1e-8, stop_mode="abs")
    assert res.status == "max_iter"
    assert not res.converged.any()
    assert torch.equal(res.abs_residual, res.abs_trace.min(0).values)
    assert torch.allclose(res.z, z0)  # the start had the smallest residual


def test_nonfinite_evaluations_are_recorded_and_never_returned():
    calls = {"n": 0}

    def f(z):
        calls["n"] += 1
        out = 0.5 * z + 1
        if calls["n"] >= 3:
            out = out.clone()
            out[0] = float("nan")
        return out

    for name in SOLVERS:
        calls["n"] = 0
        res = solve(f, torch.zeros(2, 3, dtype=torch.float64), solver=name, max_iter=50, tol=1e-12)
        assert res.status == "nonfinite", name
        assert bool(res.nonfinite[0]) and not bool(res.nonfinite[1])
        assert torch.isfinite(res.z).all() and torch.isfinite(res.fz).all(), name
        assert torch.isfinite(res.rel_residual).all()


def test_anderson_survives_singular_systems():
    # a constant map makes every residual after the first identical: the Gram matrix is singular without lam
    c = torch.randn(4, 6, dtype=torch.float64)
    res = anderson(lambda z: c.clone(), torch.zeros_like(c), max_iter=20, tol=1e-12, lam=0.0)
    assert torch.isfinite(res.z).all()
    assert torch.allclose(res.z, c)
    # and in float32 with a rank-deficient affine map
    A = torch.zeros(6, 6)
    A[0, 0] = 0.5
    b = torch.ones(6)
    res = anderson(lambda z: z @ A.T + b, torch.zeros(3, 6), max_iter=30, tol=1e-6, lam=0.0)
    assert res.status == "converged" and torch.isfinite(res.z).all()


def test_argument_errors():
    f = lambda z: z
    with pytest.raises(ValueError, match="unknown solver"):
        get_solver("newton")
    with pytest.raises(ValueError, match="max_iter"):
        anderson(f, torch.zeros(2, 2), max_iter=0)
    with pytest.raises(ValueError, match="stop_mode"):
        anderson(f, torch.zeros(2, 2), stop_mode="max")
    with pytest.raises(ValueError, match="batch"):
        solve(f, torch.zeros(0, 3))


def test_abs_stop_mode():
    f, z_star = affine_problem()
    res = anderson(f, torch.zeros_like(z_star), max_iter=200, tol=1e-9, stop_mode="abs")
    assert res.abs_residual.max() <= 1e-9
    assert res.status == "converged"


@pytest.mark.parametrize("name", SOLVERS)
def test_best_iterate_is_kept_per_sample_in_a_mixed_batch(name):
    # rows 0-2 contract (a = 0.5), rows 3-5 expand (a = 1.5, fixed point -2 repels): every step improves some
    # samples and not others, so the best iterates are updated row by row
    a = torch.tensor([0.5, 0.6, 0.7, 1.5, 1.6, 1.7], dtype=torch.float64)[:, None]
    c = torch.linspace(-1, 1, 4, dtype=torch.float64)[None] + 1
    f = lambda z: a * z + c
    z0 = torch.full((6, 4), 0.3, dtype=torch.float64)
    res = solve(f, z0, solver=name, max_iter=80, tol=1e-10, stop_mode="abs")
    # the returned pair is consistent for every sample (no row of one iterate paired with another's f)
    assert torch.allclose(res.fz, f(res.z), atol=1e-12), name
    assert torch.allclose((res.fz - res.z).norm(dim=1), res.abs_residual, atol=1e-12)
    assert torch.equal(res.abs_residual, res.abs_trace.min(0).values)
    assert torch.allclose(res.z[:3], c.expand(3, 4) / (1 - a[:3]), atol=1e-6)


@pytest.mark.parametrize("m", [1, 2, 6])
def test_anderson_returns_a_best_iterate_older_than_its_memory(m):
    # a map whose residual per sample follows a set schedule (it is a different map at each call, which is all
    # this bookkeeping test needs): each sample's best iterate is at a known call, for most of them more than m
    # calls before the last, i.e. already gone from the solver's history when the solve ends
    schedules = torch.tensor([
        [1.0, 0.5, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],  # best at call 2
        [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.01],  # best at the last call
        [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4],  # best at the start
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.04, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99],  # best at call 5
    ], dtype=torch.float64)
    d = torch.randn(4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    seen = []

    def f(z):
        k = len(seen)
        fz = z + schedules[:, k, None] * d  # residual ||fz - z|| = schedule * ||d||
        seen.append((z.clone(), fz.clone()))
        return fz

    res = anderson(f, torch.zeros(4, 7, dtype=torch.float64), max_iter=12, tol=0.0, m=m, stop_mode="abs")
    assert res.nstep == 12
    best = [2, 11, 0, 5]
    for b, k in enumerate(best):
        assert torch.equal(res.z[b], seen[k][0][b]), (b, k)
        assert torch.equal(res.fz[b], seen[k][1][b]), (b, k)
    assert torch.equal(res.abs_residual, res.abs_trace.min(0).values)


class _OutMap:
    """An affine map that can write into a given buffer (the ACCEPTS_OUT protocol), or pretends to and does not."""

    accepts_out = True

    def __init__(self, honour_out: bool):
        f, self.z_star = affine_problem(bsz=4, n=9, dtype=torch.float32)
        self.f, self.honour_out, self.outs = f, honour_out, 0

    def __call__(self, z, out=None):
        if out is None or not self.honour_out:
            return self.f(z)
        self.outs += 1
        return torch.add(self.f(z), 0, out=out)


@pytest.mark.parametrize("honour_out", [True, False])
def test_anderson_with_maps_that_write_into_its_buffers(honour_out):
    fmap = _OutMap(honour_out)
    z0 = torch.zeros_like(fmap.z_star)
    res = anderson(fmap, z0, max_iter=40, tol=1e-6)
    plain = anderson(fmap.f, z0, max_iter=40, tol=1e-6)
    assert res.status == "converged" and res.nstep == plain.nstep
    assert torch.equal(res.z, plain.z) and torch.equal(res.fz, plain.fz)
    assert fmap.outs == (res.nstep if honour_out else 0)
    # the result does not share memory with the solver's buffers (a later solve must not change it)
    z_before = res.z.clone()
    anderson(fmap, z0 + 1, max_iter=5, tol=0.0)
    assert torch.equal(res.z, z_before)


@pytest.mark.parametrize("beta", [1.0, 0.6])
def test_anderson_first_step_is_the_damped_fixed_point_step(beta):
    # with one entry in the history the mixing weight is exactly 1: x1 = f(x0) - (1 - beta) (f(x0) - x0), the
    # damped plain iteration with tau = beta; both solvers then see the same first two iterates
    f, _ = affine_problem(bsz=4, n=9, rho=0.9)
    z0 = torch.randn(4, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    a = anderson(f, z0, max_iter=2, tol=0.0, beta=beta)
    p = fixed_point_iter(f, z0, max_iter=2, tol=0.0, tau=beta)
    assert torch.allclose(a.abs_trace, p.abs_trace, rtol=1e-12, atol=0)  # a Gram diagonal vs a norm
    assert torch.allclose(a.z, p.z, rtol=1e-14, atol=0)
