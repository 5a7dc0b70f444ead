"""Gradients through a fixed point: exact implicit differentiation, phantom gradients, and unrolling.

:func:`deq_forward` solves ``z* = f(z*)`` without tracking gradients, then re-attaches ``z*`` to the graph:

* ``b_mode="implicit"``: one differentiable application ``f(z*)`` whose incoming gradient ``g`` is replaced, during
  ``backward()``, by the solution ``y`` of the adjoint fixed point ``y = y J_f(z*) + g`` (vector-Jacobian products
  through that one application, solved with a chosen solver and tolerance). This is the exact gradient of the
  equilibrium up to the solver tolerances.
* ``b_mode="phantom"``: ``k`` damped, differentiable steps ``z <- (1 - tau) z + tau f(z)`` from ``z*``; with ``k = 1``
  and ``tau = 1`` this is the Jacobian-free backward. Cheap, approximate.

:func:`unrolled_forward` is the weight-tied network without a solver: ``k`` applications of ``f`` from the initial
state with ordinary backprop (the paper's "no DEQ" ablation).

The implicit backward is a custom autograd function that owns its closure, so a layer may be called any number of
times before one ``backward()`` (each call solves its own adjoint problem), and nothing is stored on a module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from . import defaults as D
from .result import BackwardStats, SolverResult
from .solvers import solve

log = logging.getLogger(__name__)

Func = Callable[[Tensor], Tensor]

B_MODES = ("implicit", "phantom")


@dataclass
class DEQOutput:
    """What :func:`deq_forward` returns.

    Attributes:
        z: the layer output, ``f(z*)`` (implicit) or the last phantom step; attached to the graph when gradients
            are being tracked.
        forward: the forward solve's result.
        backward: statistics of the backward pass, filled in when ``backward()`` runs (``None`` without a graph).
        z_leaf: ``z*`` as a leaf requiring gradient, the point of the differentiable application (``None``
            without a graph). Together with ``fz`` it gives Jacobian-vector products at the fixed point.
        fz: the differentiable ``f(z_leaf)`` (``None`` without a graph).
        jac_loss: the Jacobian penalty, filled in by :class:`~deqfusion.deq.layer.DEQLayer` (None here).
    """

    z: Tensor
    forward: SolverResult
    backward: BackwardStats | None
    z_leaf: Tensor | None
    fz: Tensor | None
    jac_loss: Tensor | None = None


class _AdjointSolve(torch.autograd.Function):
    """Identity in the forward pass; in the backward pass, swaps the gradient ``g`` for the adjoint solution."""

    @staticmethod
    def forward(ctx, fz: Tensor, backward_fn):  # noqa: D401 - autograd signature
        ctx.backward_fn = backward_fn
        return fz.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        return ctx.backward_fn(grad), None


def _make_adjoint_backward(fz: Tensor, z_leaf: Tensor, stats: BackwardStats, solver_kwargs: dict):
    def backward_fn(grad: Tensor) -> Tensor:
        def vjp_map(y: Tensor) -> Tensor:
            (vjp,) = torch.autograd.grad(fz, z_leaf, y, retain_graph=True)
            return vjp + grad

        # start at y = g, the first step from y = 0 (which would spend one VJP to find g)
        res = solve(vjp_map, grad.detach().clone(), **solver_kwargs)
        stats.ran = True
        stats.calls += 1
        stats.nstep = res.nstep
        stats.abs_residual = res.abs_residual
        stats.rel_residual = res.rel_residual
        stats.rel_trace = res.rel_trace
        stats.converged = res.converged
        stats.status = res.status
        if res.status == "nonfinite":
            log.warning("implicit backward: non-finite values in the adjoint solve (%d samples)",
                        int(res.nonfinite.sum()))
        elif res.status != "converged":
            log.debug("implicit backward stopped at max_iter=%d, max rel residual %.3g", res.nstep,
                      float(res.rel_residual.max()))
        # the lowest-residual iterate y; y = yJ + g is best approximated by the evaluated right-hand side
        return res.z

    return backward_fn


#: the options of :func:`deq_forward`, with their defaults (:mod:`deqfusion.deq.defaults`)
SOLVE_OPTIONS: dict = {k: D.DEFAULTS[k] for k in (
    "f_solver", "f_max_iter", "f_tol", "f_stop_mode", "b_mode", "b_solver", "b_max_iter", "b_tol", "b_stop_mode",
    "phantom_steps", "phantom_tau")}


def deq_forward(
    f: Func,
    z_init: Tensor,
    *,
    f_solver_kwargs: dict | None = None,
    b_solver_kwargs: dict | None = None,
    **options,
) -> DEQOutput:
    """Solve ``z* = f(z*)`` from ``z_init`` and return ``f(z*)`` with gradients defined by ``b_mode``.

    ``f`` must be a function of the state only (close over inputs and parameters). When gradients are not being
    tracked (``torch.no_grad()``, or nothing in ``f`` requires grad) the result is ``f(z*)`` as computed by the
    solver, with no extra evaluation.

    Args:
        f: the map, ``(B, ...) -> (B, ...)``, sample by sample; differentiable in whatever it closes over.
        z_init: the initial state, shape ``(B, ...)`` (zeros, or a previous fixed point to warm-start from: the
            gradient does not depend on where the solve started). Detached.
        f_solver_kwargs, b_solver_kwargs: further options of the forward / adjoint solver (e.g. ``{"m": 4}``).
        **options: any of :data:`SOLVE_OPTIONS` (an option left out takes its default there):
        f_solver, f_max_iter, f_tol, f_stop_mode: the forward solve (see :func:`~deqfusion.deq.solvers.solve`).
        b_mode: ``"implicit"``: the exact gradient at the fixed point, by solving the adjoint fixed point
            ``y = y J_f(z*) + g`` in ``backward()``; ``"phantom"``: ``phantom_steps`` damped differentiable steps
            ``z <- (1 - tau) z + tau f(z)`` from ``z*``, backpropagated as usual.
        b_solver, b_max_iter, b_tol, b_stop_mode: the adjoint solve of the implicit backward.
        phantom_steps: number of phantom steps (>= 1); one step at ``phantom_tau=1`` is the Jacobian-free
            backward.
        phantom_tau: damping of the phantom steps, in ``(0, 1]``.

    Returns:
        A :class:`DEQOutput`: ``z`` (``f(z*)`` attached to the graph, shape of ``z_init``), the forward
        :class:`~deqfusion.deq.result.SolverResult`, the :class:`~deqfusion.deq.result.BackwardStats` filled in by
        ``backward()``, and ``z_leaf`` / ``fz`` for Jacobian terms at the fixed point.

    Raises:
        TypeError: an option that is not one of :data:`SOLVE_OPTIONS`.
        ValueError: an unknown ``b_mode``, ``phantom_steps < 1``, ``phantom_tau`` outside ``(0, 1]``, or an
            invalid solver option.

    Example:
        ```python
        W = torch.nn.Parameter(0.1 * torch.randn(16, 16))
        x = torch.randn(8, 16)
        out = deq_forward(lambda z: torch.tanh(z @ W + x), torch.zeros(8, 16))
        out.z.square().sum().backward()      # W.grad: the gradient of the equilibrium; out.backward.nstep
        ```
    """
    unknown = sorted(set(options) - set(SOLVE_OPTIONS))
    if unknown:
        raise TypeError(f"deq_forward() got unknown option(s) {unknown}; the options are {sorted(SOLVE_OPTIONS)}")
    o = {**SOLVE_OPTIONS, **options}
    b_mode, phantom_steps, phantom_tau = o["b_mode"], o["phantom_steps"], o["phantom_tau"]
    if b_mode not in B_MODES:
        raise ValueError(f"b_mode must be one of {B_MODES}, got {b_mode!r}")
    if phantom_steps < 1:
        raise ValueError(f"phantom_steps must be >= 1, got {phantom_steps}")
    if not 0 < phantom_tau <= 1:
        raise ValueError(f"phantom_tau must be in (0, 1], got {phantom_tau}")
    fwd = solve(
        f, z_init.detach(), solver=o["f_solver"], max_iter=o["f_max_iter"], tol=o["f_tol"], stop_mode=o["f_stop_mode"],
        **(f_solver_kwargs or {}),
    )
    z_star = fwd.z
    if not torch.is_grad_enabled():
        return DEQOutput(z=fwd.fz, forward=fwd, backward=None, z_leaf=None, fz=None)

    z_leaf = z_star.detach().requires_grad_()
    fz = f(z_leaf)
    if not fz.requires_grad:
        return DEQOutput(z=fz.detach(), forward=fwd, backward=None, z_leaf=None, fz=None)

    stats = BackwardStats(mode=b_mode)
    if b_mode == "implicit":
        solver_kwargs = dict(solver=o["b_solver"], max_iter=o["b_max_iter"], tol=o["b_tol"], stop_mode=o["b_stop_mode"],
                             **(b_solver_kwargs or {}))
        out = _AdjointSolve.apply(fz, _make_adjoint_backward(fz, z_leaf, stats, solver_kwargs))
    else:
        z = z_leaf + phantom_tau * (fz - z_leaf) if phantom_tau != 1.0 else fz
        for _ in range(phantom_steps - 1):
            fz_k = f(z)
            z = z + phantom_tau * (fz_k - z) if phantom_tau != 1.0 else fz_k
        out = z
        _mark_ran_on_backward(out, stats, phantom_steps)
    return DEQOutput(z=out, forward=fwd, backward=stats, z_leaf=z_leaf, fz=fz)


def _mark_ran_on_backward(out: Tensor, stats: BackwardStats, steps: int) -> None:
    def hook(grad: Tensor) -> None:
        stats.ran = True
        stats.calls += 1
        stats.nstep = steps
        stats.status = "unrolled"

    out.register_hook(hook)


def unrolled_forward(f: Func, z_init: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """Apply ``f`` ``steps`` times from ``z_init`` with ordinary autograd.

    Args:
        f: the map, ``(B, ...) -> (B, ...)``.
        z_init: the starting state, shape ``(B, ...)``.
        steps: number of applications (>= 1).

    Returns:
        ``(z_k, rel_trace)``: the last state (attached to the graph) and the ``(steps, B)`` per-sample relative
        change ``||f(z) - z|| / ||f(z)||`` of each step (detached), for comparing with a solver's residual trace.

    Raises:
        ValueError: ``steps < 1``.
    """
    if steps < 1:
        raise ValueError(f"unrolled steps must be >= 1, got {steps}")
    z = z_init
    trace = []
    for _ in range(steps):
        fz = f(z)
        with torch.no_grad():
            d = (fz - z).flatten(1).norm(dim=1)
            trace.append(d / (fz.flatten(1).norm(dim=1) + 1e-9))
        z = fz
    return z, torch.stack(trace)
