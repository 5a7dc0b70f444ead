"""Jacobian tools at a fixed point: Hutchinson's Frobenius-norm estimate and a power-method spectral radius."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["jac_frobenius_sq", "spectral_radius"]


def jac_frobenius_sq(
    fz: Tensor, z: Tensor, n_probes: int = 2, normalize: bool = True, create_graph: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Hutchinson estimate of ``||J||_F^2`` for ``J = d fz / d z``, with Gaussian probes.

    ``E_v ||v^T J||^2 = ||J||_F^2`` for ``v ~ N(0, I)``; the estimate averages ``n_probes`` draws. With
    ``normalize=True`` the result is divided by ``fz.numel()`` (batch included), the scale the DEQ fusion paper
    regularises. With ``create_graph=True`` the estimate is differentiable with respect to whatever produced ``fz``
    (parameters and inputs), so adding it to a loss trains the model towards a well-conditioned fixed point.

    Args:
        fz: output of one differentiable application of ``f`` at ``z``, any shape.
        z: the point, a tensor that requires grad and from which ``fz`` was computed.
        n_probes: number of Gaussian probes ``v`` averaged (each costs one vector-Jacobian product).
        normalize: divide by ``fz.numel()``.
        create_graph: keep the estimate differentiable (for a loss term); False for a diagnostic value.
        generator: random generator for the probes (default: torch's global one).

    Returns:
        A scalar tensor on ``fz``'s device and dtype.

    Raises:
        ValueError: ``n_probes < 1``, or ``z`` does not require grad.

    Example:
        ```python
        out = deq_forward(f, z0)                                # f closes over trainable parameters
        loss = task_loss(out.z) + 0.1 * jac_frobenius_sq(out.fz, out.z_leaf)
        loss.backward()
        ```
    """
    if n_probes < 1:
        raise ValueError(f"n_probes must be >= 1, got {n_probes}")
    if not z.requires_grad:
        raise ValueError("z must require grad and fz must be computed from it")
    total = fz.new_zeros(())
    for _ in range(n_probes):
        v = torch.randn(fz.shape, device=fz.device, dtype=fz.dtype, generator=generator)
        (vjp,) = torch.autograd.grad(fz, z, v, retain_graph=True, create_graph=create_graph)
        total = total + vjp.pow(2).sum()
    est = total / n_probes
    return est / fz.numel() if normalize else est


@torch.no_grad()
def spectral_radius(f: Callable[[Tensor], Tensor], z: Tensor, n_iter: int = 30, seed: int | None = 0) -> Tensor:
    """Per-sample power-method estimate of the spectral radius of ``J_f(z)`` (a convergence diagnostic).

    Iterates ``v <- v J / ||v J||`` with vector-Jacobian products (the eigenvalues of ``J^T`` are those of ``J``)
    and returns ``||v J|| / ||v||`` per sample, shape ``(B,)``. A value below 1 means the fixed-point iteration is
    locally contractive. For a dominant complex pair the estimate oscillates; it is a diagnostic, not a proof.

    Args:
        f: the map, sample by sample (``(B, ...) -> (B, ...)``); evaluated once, with gradients, at ``z``.
        z: the point, shape ``(B, ...)``; typically a solve's ``result.z``. Detached inside.
        n_iter: power iterations (vector-Jacobian products).
        seed: seed of the random start vector (None: torch's global generator).

    Returns:
        ``(B,)`` tensor of estimates, on ``z``'s device and dtype. Runs under ``torch.no_grad()`` apart from the
        one differentiable evaluation it needs; no gradient flows out of it.

    Example:
        ```python
        res = solve(f, z0)
        rho = spectral_radius(f, res.z)      # e.g. tensor([0.41, 0.39, ...]): the iteration contracts
        ```
    """
    gen = None
    if seed is not None:
        gen = torch.Generator(device=z.device)
        gen.manual_seed(seed)
    with torch.enable_grad():
        zl = z.detach().requires_grad_()
        fz = f(zl)
        bsz = z.shape[0]
        v = torch.randn(fz.shape, device=z.device, dtype=z.dtype, generator=gen)
        v = v / v.reshape(bsz, -1).norm(dim=1).clamp_min(1e-30).view(bsz, *([1] * (v.dim() - 1)))
        est = torch.zeros(bsz, device=z.device, dtype=z.dtype)
        for _ in range(n_iter):
            (vj,) = torch.autograd.grad(fz, zl, v, retain_graph=True)
            est = vj.reshape(bsz, -1).norm(dim=1)
            v = vj / est.clamp_min(1e-30).view(bsz, *([1] * (vj.dim() - 1)))
    return est
