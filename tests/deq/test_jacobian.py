import torch

from deqfusion.deq.jacobian import jac_frobenius_sq, spectral_radius


def test_hutchinson_matches_exact_frobenius_norm_of_linear_map():
    g = torch.Generator().manual_seed(0)
    bsz, n = 4, 10
    A = torch.randn(n, n, generator=g, dtype=torch.float64)
    z = torch.randn(bsz, n, dtype=torch.float64, requires_grad=True)
    fz = z @ A.T
    exact = bsz * A.pow(2).sum()  # J is block diagonal with B copies of A
    n_probes = 400
    est = jac_frobenius_sq(fz, z, n_probes=n_probes, normalize=False, generator=g)
    # Var ||v^T J||^2 = 2 ||J J^T||_F^2 for Gaussian v
    sd = torch.sqrt(2 * bsz * (A @ A.T).pow(2).sum() / n_probes)
    assert abs(est - exact) < 4 * sd
    # normalised by the number of elements of the state
    norm = jac_frobenius_sq(fz, z, n_probes=n_probes, generator=g)
    assert abs(norm * fz.numel() - exact) < 4 * sd


def test_hutchinson_is_differentiable():
    w = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    z = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    fz = w * z  # ||J||_F^2 = 15 w^2; normalised: w^2
    est = jac_frobenius_sq(fz, z, n_probes=1)
    (gw,) = torch.autograd.grad(est, w)
    # the estimate is w^2 * ||v||^2 / numel, so its derivative is 2 est / w
    assert torch.allclose(gw, 2 * est.detach() / w.detach())


def test_spectral_radius_of_symmetric_linear_map():
    g = torch.Generator().manual_seed(0)
    n = 12
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eig = torch.linspace(-0.3, 0.9, n, dtype=torch.float64)
    A = Q @ torch.diag(eig) @ Q.T
    z = torch.randn(3, n, dtype=torch.float64)
    rho = spectral_radius(lambda v: v @ A.T, z, n_iter=200)
    assert rho.shape == (3,)
    assert torch.allclose(rho, torch.full((3,), 0.9, dtype=torch.float64), atol=1e-3)
