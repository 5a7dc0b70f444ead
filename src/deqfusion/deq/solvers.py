"""Batched fixed-point solvers: Anderson acceleration, Broyden's method and plain (damped) iteration.

Every solver finds ``z`` with ``f(z) = z`` for a batch of independent problems: ``f`` maps a state of shape
``(B, ...)`` to the same shape, and sample ``b`` of the output may depend only on sample ``b`` of the input.
Residuals are measured per sample:

* absolute: ``||f(z) - z||``
* relative: ``||f(z) - z|| / (||f(z)|| + eps)``

so that the stopping rule, and hence the answer, does not depend on the batch size. A solve stops as soon as every
sample's residual (the one named by ``stop_mode``) is at most ``tol``, or after ``max_iter`` iterations, and returns
for each sample the iterate with the lowest residual seen. Non-finite evaluations are recorded per sample
(``SolverResult.nonfinite``); such samples keep their best finite iterate and are not advanced further.

All solvers run under ``torch.no_grad()``: gradients are the business of :mod:`deqfusion.deq.backward`.

Every solver takes

* ``f``: the map, ``(B, ...) -> (B, ...)``, sample by sample; called without gradient tracking;
* ``z0``: the initial state, shape ``(B, ...)`` with ``B >= 1``; its device and dtype are the solve's;
* ``max_iter``: the iteration budget (each iteration is one evaluation of ``f``);
* ``tol``: the per-sample tolerance on the residual named by ``stop_mode``; 0 runs the whole budget;
* ``stop_mode``: ``"rel"`` (``||f(z) - z|| / ||f(z)||``) or ``"abs"`` (``||f(z) - z||``);

and returns a :class:`~deqfusion.deq.result.SolverResult`: each sample's lowest-residual iterate ``z`` and
``f(z)``, the per-sample residuals, traces and flags, the number of iterations and a status.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch import Tensor

from . import defaults as D
from .result import SolverResult

log = logging.getLogger(__name__)

Func = Callable[[Tensor], Tensor]

EPS = 1e-9

#: Name of the attribute by which a map says it can be called as ``f(z, out=buffer)``: it then writes ``f(z)``
#: into ``buffer`` (a contiguous tensor of ``z``'s shape that does not overlap ``z``) and returns it. Solvers that keep
#: their evaluations in buffers of their own (Anderson) then skip a copy per iteration. A map may ignore ``out``
#: and return another tensor (e.g. under autograd); its value is then copied.
ACCEPTS_OUT = "accepts_out"

__all__ = ["ACCEPTS_OUT", "anderson", "broyden", "fixed_point_iter", "solve", "get_solver", "SOLVERS", "SolverResult"]


class _Tracker:
    """Per-sample bookkeeping shared by the solvers: residuals, traces, best iterate, stopping, failures."""

    def __init__(self, z0: Tensor, tol: float, stop_mode: str, name: str):
        if stop_mode not in ("rel", "abs"):
            raise ValueError(f"stop_mode must be 'rel' or 'abs', got {stop_mode!r}")
        if tol < 0:
            raise ValueError(f"tol must be >= 0, got {tol}")
        self.shape = z0.shape
        self.bsz = z0.shape[0]
        self.tol = float(tol)
        self.stop_mode = stop_mode
        self.name = name
        dev, dt = z0.device, z0.dtype
        self.best_z = z0.reshape(self.bsz, -1).clone()
        self.best_fz = torch.zeros_like(self.best_z)
        self._owned = True  # best_z / best_fz are this tracker's own buffers (not references to iterates)
        inf = torch.full((self.bsz,), float("inf"), device=dev, dtype=dt)
        self.best_abs = inf.clone()
        self.best_rel = inf.clone()
        self.nonfinite = torch.zeros(self.bsz, dtype=torch.bool, device=dev)
        self.abs_trace: list[Tensor] = []
        self.rel_trace: list[Tensor] = []
        self.nstep = 0

    def _screen(self, abs_res: Tensor, rel_res: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Record the residuals in the traces, non-finite ones as inf (and their samples as failed).

        Returns the per-sample mask of finite residuals and the residuals as recorded."""
        finite = torch.isfinite(abs_res) & torch.isfinite(rel_res)
        if not bool(finite.all()):
            self.nonfinite |= ~finite
            inf = torch.full_like(abs_res, float("inf"))
            abs_res = torch.where(finite, abs_res, inf)
            rel_res = torch.where(finite, rel_res, inf)
        self.abs_trace.append(abs_res)
        self.rel_trace.append(rel_res)
        return finite, abs_res, rel_res

    def _record(self, x: Tensor, fx: Tensor, abs_res: Tensor | None) -> tuple[Tensor, Tensor, int]:
        """Residuals, traces and best residuals for the iterate ``x`` (flattened, (B, n)) and ``f(x)``.

        Returns the per-sample masks of finite evaluations and of improved samples, and the number improved.
        """
        self.nstep += 1
        if abs_res is None:
            abs_res = (fx - x).norm(dim=1)
        rel_res = abs_res / (fx.norm(dim=1) + EPS)
        finite, abs_res, rel_res = self._screen(abs_res, rel_res)
        crit = rel_res if self.stop_mode == "rel" else abs_res
        best_crit = self.best_rel if self.stop_mode == "rel" else self.best_abs
        better = crit < best_crit
        n_better = int(better.sum())
        if n_better == self.bsz:
            self.best_abs, self.best_rel = abs_res, rel_res
        elif n_better:
            self.best_abs = torch.where(better, abs_res, self.best_abs)
            self.best_rel = torch.where(better, rel_res, self.best_rel)
        return finite, better, n_better

    def update(self, x: Tensor, fx: Tensor, abs_res: Tensor | None = None) -> Tensor:
        """Record the iterate ``x`` (flattened, (B, n)), ``f(x)`` and optionally ``||f(x) - x||`` per sample.

        Returns the per-sample mask of finite evaluations.
        """
        finite, better, n_better = self._record(x, fx, abs_res)
        # iterates are fresh tensors that the solvers never modify in place, so when every sample improved the
        # best ones are kept by reference; a partial improvement copies only the improved rows, into buffers this
        # tracker owns (a referenced iterate is cloned once before its first in-place update)
        if n_better == self.bsz:
            self.best_z, self.best_fz = x, fx
            self._owned = False
        elif n_better:
            if not self._owned:
                self.best_z, self.best_fz = self.best_z.clone(), self.best_fz.clone()
                self._owned = True
            idx = better.nonzero()[:, 0]
            self.best_z.index_copy_(0, idx, x.index_select(0, idx))
            self.best_fz.index_copy_(0, idx, fx.index_select(0, idx))
        return finite

    def done(self) -> bool:
        crit = self.best_rel if self.stop_mode == "rel" else self.best_abs
        return bool(((crit <= self.tol) | self.nonfinite).all())

    def result(self) -> SolverResult:
        crit = self.best_rel if self.stop_mode == "rel" else self.best_abs
        converged = crit <= self.tol
        never_finite = ~torch.isfinite(self.best_abs)
        if never_finite.any():
            # no finite evaluation at all for these samples: f(z0) itself was non-finite
            self.best_fz = torch.where(never_finite[:, None], torch.full_like(self.best_fz, float("nan")),
                                       self.best_fz)
        if self.nonfinite.any():
            status = "nonfinite"
        elif bool(converged.all()):
            status = "converged"
        else:
            status = "max_iter"
        if self.abs_trace:
            abs_trace = torch.stack(self.abs_trace)
            rel_trace = torch.stack(self.rel_trace)
        else:
            abs_trace = rel_trace = self.best_abs.new_zeros((0, self.bsz))
        return SolverResult(
            z=self.best_z.reshape(self.shape),
            fz=self.best_fz.reshape(self.shape),
            nstep=self.nstep,
            abs_residual=self.best_abs,
            rel_residual=self.best_rel,
            abs_trace=abs_trace,
            rel_trace=rel_trace,
            converged=converged,
            nonfinite=self.nonfinite.clone(),
            status=status,
            solver=self.name,
        )


class _RingTracker(_Tracker):
    """A tracker for a solver that keeps its recent iterates in ring buffers (Anderson).

    ``X`` and ``F`` are slot-major ``(m, B, n)`` buffers in which iteration ``k`` lives in slot ``k % m``. The best
    iterate of each sample is kept as the iteration it came from (no copy) while that iteration is still in the
    buffers; the solver calls :meth:`release` before a slot is overwritten, which copies out only the rows whose
    best iterate is about to go.
    """

    def __init__(self, z0: Tensor, tol: float, stop_mode: str, name: str, X: Tensor, F: Tensor):
        super().__init__(z0, tol, stop_mode, name)
        self.X, self.F = X, F
        self.best_k = torch.full((self.bsz,), -1, dtype=torch.long, device=z0.device)
        self.seen_nonfinite = False

    def update_slot(self, k: int, abs_res: Tensor) -> tuple[Tensor | None, bool]:
        """Record iteration ``k`` (its iterate and evaluation are in slot ``k % m``, ``abs_res`` its residuals).

        Returns ``(finite, done)``: the per-sample mask of finite evaluations, or None when all were finite, and
        whether the solve may stop (see :meth:`_Tracker.done`). The common case (every evaluation finite) reads
        one number back from the device: the largest best residual, made NaN by any non-finite residual.
        """
        self.nstep += 1
        fx = self.F[k % self.X.shape[0]]
        rel_res = abs_res / (fx.norm(dim=1) + EPS)
        crit = rel_res if self.stop_mode == "rel" else abs_res
        best_crit = self.best_rel if self.stop_mode == "rel" else self.best_abs
        better = crit < best_crit  # false for NaN: a non-finite residual never becomes a best one
        self.best_abs = torch.where(better, abs_res, self.best_abs)
        self.best_rel = torch.where(better, rel_res, self.best_rel)
        self.best_k.masked_fill_(better, k)
        best_crit = self.best_rel if self.stop_mode == "rel" else self.best_abs
        # best + 0 * abs * rel: NaN when a residual is not finite (or their product overflows: then the exact check
        # below finds everything finite), else the best residual
        probe = float(torch.addcmul(best_crit, abs_res, rel_res, value=0).max())
        if probe == probe and not self.seen_nonfinite:
            self.abs_trace.append(abs_res)
            self.rel_trace.append(rel_res)
            return None, probe <= self.tol
        finite = self._screen(abs_res, rel_res)[0]
        all_finite = bool(finite.all())
        self.seen_nonfinite |= not all_finite
        return (None if all_finite else finite), self.done()

    def release(self, k: int) -> None:
        """Iteration ``k``'s slot is about to be overwritten: copy out the rows whose best iterate it holds."""
        if k < 0:
            return
        hit = self.best_k == k
        if bool(hit.any()):
            idx = hit.nonzero()[:, 0]
            slot = k % self.X.shape[0]
            self.best_z.index_copy_(0, idx, self.X[slot].index_select(0, idx))
            self.best_fz.index_copy_(0, idx, self.F[slot].index_select(0, idx))
            self.best_k.index_fill_(0, idx, -1)

    def best(self) -> tuple[Tensor, Tensor]:
        """The best iterate and its evaluation of every sample, as new tensors (the buffers are not changed)."""
        live = self.best_k >= 0
        if not bool(live.any()):
            return self.best_z.clone(), self.best_fz.clone()
        k_lo, k_hi = int(self.best_k.min()), int(self.best_k.max())
        if k_lo == k_hi:  # one iteration is every sample's best (the usual end of a converging solve)
            slot = k_hi % self.X.shape[0]
            return self.X[slot].clone(), self.F[slot].clone()
        rows = torch.arange(self.bsz, device=self.best_k.device)
        slots = self.best_k.clamp_min(0) % self.X.shape[0]
        keep = live[:, None]
        return (torch.where(keep, self.X[slots, rows], self.best_z),
                torch.where(keep, self.F[slots, rows], self.best_fz))

    def result(self) -> SolverResult:
        self.best_z, self.best_fz = self.best()
        self.best_k.fill_(-1)
        return super().result()


def _flat(f: Func, shape: torch.Size) -> Func:
    bsz = shape[0]
    return lambda x: f(x.reshape(shape)).reshape(bsz, -1)


def _check_budget(max_iter: int) -> None:
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")


@torch.no_grad()
def fixed_point_iter(
    f: Func, z0: Tensor, max_iter: int = D.F_MAX_ITER, tol: float = D.F_TOL, stop_mode: str = "rel",
    tau: float = 1.0, **_unused,
) -> SolverResult:
    """Plain (optionally damped) fixed-point iteration ``z <- (1 - tau) z + tau f(z)``.

    Converges when ``f`` is a contraction near the fixed point (the rate is about the spectral radius of its
    Jacobian); the weight-tied unrolled network is this iteration run for a fixed number of steps.

    Args:
        f, z0, max_iter, tol, stop_mode: the arguments every solver takes (see the module's description).
        tau: damping, in ``(0, 1]``; 1 is the undamped iteration.

    Returns:
        A :class:`~deqfusion.deq.result.SolverResult` (see the module's description).

    Raises:
        ValueError: ``max_iter < 1``, ``tau`` outside ``(0, 1]``, a negative ``tol`` or an unknown ``stop_mode``.
    """
    _check_budget(max_iter)
    if not 0 < tau <= 1:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    ff = _flat(f, z0.shape)
    tr = _Tracker(z0, tol, stop_mode, "fixed_point_iter")
    x = z0.reshape(z0.shape[0], -1)
    for _ in range(int(max_iter)):
        fx = ff(x)
        finite = tr.update(x, fx)
        if tr.done():
            break
        step = x + tau * (fx - x)
        x = torch.where(finite[:, None], step, tr.best_z)
    return tr.result()


def _evaluate_into(f: Func, x: Tensor, out: Tensor, shape: torch.Size, write_out: bool) -> None:
    """``out <- f(x)`` for flattened ``(B, n)`` tensors; a map that accepts ``out=`` writes there itself."""
    if write_out:
        r = f(x.view(shape), out=out.view(shape))
        if r.data_ptr() == out.data_ptr() and r.is_contiguous():
            return
    else:
        r = f(x.view(shape))
    out.copy_(r.reshape(out.shape))


@torch.no_grad()
def anderson(
    f: Func, z0: Tensor, max_iter: int = D.F_MAX_ITER, tol: float = D.F_TOL, stop_mode: str = "rel",
    m: int = D.ANDERSON_M, lam: float = D.ANDERSON_LAM, beta: float = D.ANDERSON_BETA, lam_relative: bool = True,
    **_unused,
) -> SolverResult:
    """Anderson acceleration (type II) with memory ``m``, Tikhonov regulariser ``lam`` and mixing ``beta``.

    With ``lam_relative=True`` (default) the regulariser is ``lam`` times the mean squared residual norm in the
    history, so it keeps the same strength whatever the scale of the residuals; an absolute ``lam`` (the reference
    code's ``1e-4``, ``lam_relative=False``) dominates once residuals are small and stalls convergence.

    Each iteration solves a small ``(k+1) x (k+1)`` bordered least-squares system per sample for the mixing
    weights ``alpha`` (summing to one) that minimise ``||sum_j alpha_j (f(x_j) - x_j)||``, then steps to
    ``sum_j alpha_j (f(x_j) - (1 - beta) (f(x_j) - x_j))``. The Gram matrix of the residual history is updated one
    row per iteration. Samples whose system is singular or non-finite take a plain fixed-point step instead.

    The iterates, their evaluations and their residuals live in three ring buffers of ``m`` slots; the mixing step
    writes the next iterate straight into its slot, and a map with a true attribute ``accepts_out`` is called as
    ``f(z, out=buffer)`` and writes its value there (see :data:`ACCEPTS_OUT`), so an iteration copies no state.

    Args:
        f, z0, max_iter, tol, stop_mode: the arguments every solver takes (see the module's description).
        m: memory, the number of past iterates mixed (memory cost ``3 m`` states).
        lam: Tikhonov regulariser of the least-squares system (relative, see above).
        beta: mixing; 1 takes the mixed evaluations, smaller values move part of the way.
        lam_relative: scale ``lam`` by the residual history's mean squared norm.

    Returns:
        A :class:`~deqfusion.deq.result.SolverResult` (see the module's description).

    Raises:
        ValueError: ``max_iter < 1``, ``m < 1``, a negative ``tol`` or an unknown ``stop_mode``.
    """
    _check_budget(max_iter)
    if m < 1:
        raise ValueError(f"Anderson memory m must be >= 1, got {m}")
    bsz = z0.shape[0]
    shape = z0.shape
    write_out = bool(getattr(f, ACCEPTS_OUT, False))
    z0f = z0.reshape(bsz, -1)
    n = z0f.shape[1]
    dev, dt = z0.device, z0.dtype
    # ring buffers, slot-major so that one slot is one contiguous (B, n) block; only written slots are ever read
    X = torch.empty(m, bsz, n, device=dev, dtype=dt)  # x_j
    F = torch.empty(m, bsz, n, device=dev, dtype=dt)  # f(x_j)
    G = torch.empty(m, bsz, n, device=dev, dtype=dt)  # f(x_j) - x_j
    X[0].copy_(z0f)
    tr = _RingTracker(z0, tol, stop_mode, "anderson", X, F)
    gram = torch.zeros(bsz, m, m, device=dev, dtype=dt)
    # bordered system [[0, 1^T], [1, G G^T + lam I]] [nu, alpha] = [1, 0]
    H = torch.zeros(bsz, m + 1, m + 1, device=dev, dtype=dt)
    H[:, 0, 1:] = 1
    H[:, 1:, 0] = 1
    rhs = torch.zeros(bsz, m + 1, 1, device=dev, dtype=dt)
    rhs[:, 0] = 1

    def gram_row(g: Tensor, h: int) -> Tensor:
        # (B, 1, n) x (B, n, h): <g, g_j> for the h stored residuals; this orientation of the batched product is
        # about twice as fast on CPU as (B, h, n) x (B, n, 1)
        return torch.bmm(g[:, None], G[:h].permute(1, 2, 0))[:, 0]

    for k in range(int(max_iter)):
        slot = k % m
        h = min(k + 1, m)
        x, fx = X[slot], F[slot]
        _evaluate_into(f, x, fx, shape, write_out)
        g = torch.sub(fx, x, out=G[slot])
        row = gram_row(g, h)  # row[:, slot] = ||g||^2, so the tracker needs no separate norm
        finite, done = tr.update_slot(k, row[:, slot].clamp_min(0).sqrt())
        if done:
            break
        if finite is not None:
            # a non-finite evaluation never enters the history: that sample restarts from its best iterate
            best_z, best_fz = tr.best()
            keep = finite[:, None]
            fx.copy_(torch.where(keep, fx, best_fz))
            g.copy_(torch.where(keep, g, best_fz - best_z))
            row = gram_row(g, h)
        gram[:, slot, :h] = row
        gram[:, :h, slot] = row
        tr.release(k + 1 - m)  # the next iterate goes into the slot of iteration k + 1 - m: copy its best rows out
        x_next = X[(k + 1) % m]
        if h == 1:
            # one entry: the constraint makes its weight exactly 1 (the 2 x 2 system's solution), x <- f(x)
            x_next.copy_(fx)
            if beta != 1.0:
                x_next.sub_(g, alpha=1 - beta)
            continue
        block = H[:, 1 : h + 1, 1 : h + 1]
        block.copy_(gram[:, :h, :h])
        diag = block.diagonal(dim1=1, dim2=2)
        if lam_relative:
            diag.add_((lam * diag.mean(1).clamp_min(torch.finfo(dt).tiny))[:, None])
        else:
            diag.add_(lam)
        sol, info = torch.linalg.solve_ex(H[:, : h + 1, : h + 1], rhs[:, : h + 1])
        alpha = sol[:, 1 : h + 1, 0]
        # one read-back for both checks: the sum of the solution is finite and no factorisation failed
        total, failed = torch.stack((sol.sum(), info.sum().to(dt))).tolist()
        if failed != 0 or not math.isfinite(total):
            ok = (info == 0) & torch.isfinite(alpha).all(1)
            fallback = torch.zeros_like(alpha)
            fallback[:, slot] = 1  # the newest entry alone: x <- f(x)
            alpha = torch.where(ok[:, None], alpha, fallback)
        torch.bmm(alpha[:, None], F[:h].transpose(0, 1), out=x_next.view(bsz, 1, n))
        if beta != 1.0:
            x_next.sub_(torch.bmm(alpha[:, None], G[:h].transpose(0, 1))[:, 0], alpha=1 - beta)
    return tr.result()


@torch.no_grad()
def broyden(
    f: Func, z0: Tensor, max_iter: int = D.F_MAX_ITER, tol: float = D.F_TOL, stop_mode: str = "rel",
    memory: int | None = None, **_unused,
) -> SolverResult:
    """Limited-memory ("good") Broyden's method on ``g(z) = f(z) - z``, with unit steps.

    The inverse Jacobian of ``g`` is approximated by ``-I + sum_i u_i v_i^T`` and updated each step with the rank-one
    correction that maps the last change in ``g`` onto the last step. ``memory`` caps the stored updates (default:
    ``max_iter``); samples whose update denominator vanishes skip that update.

    Args:
        f, z0, max_iter, tol, stop_mode: the arguments every solver takes (see the module's description).
        memory: number of rank-one updates kept (memory cost ``2 memory`` states); None keeps all.

    Returns:
        A :class:`~deqfusion.deq.result.SolverResult` (see the module's description).

    Raises:
        ValueError: ``max_iter < 1``, a negative ``tol`` or an unknown ``stop_mode``.
    """
    _check_budget(max_iter)
    bsz = z0.shape[0]
    ff = _flat(f, z0.shape)
    tr = _Tracker(z0, tol, stop_mode, "broyden")
    x = z0.reshape(bsz, -1)
    n = x.shape[1]
    mem = int(memory or max_iter)
    dev, dt = x.device, x.dtype
    U = torch.zeros(bsz, mem, n, device=dev, dtype=dt)
    V = torch.zeros(bsz, mem, n, device=dev, dtype=dt)
    used = 0

    def inv_mul(vec: Tensor) -> Tensor:  # (-I + U^T V) applied to vec: -vec + sum_i u_i (v_i . vec)
        if used == 0:
            return -vec
        coef = torch.einsum("bmn,bn->bm", V[:, :used], vec)
        return -vec + torch.einsum("bm,bmn->bn", coef, U[:, :used])

    def vec_inv(vec: Tensor) -> Tensor:  # vec^T (-I + U^T V)
        if used == 0:
            return -vec
        coef = torch.einsum("bmn,bn->bm", U[:, :used], vec)
        return -vec + torch.einsum("bm,bmn->bn", coef, V[:, :used])

    fx = ff(x)
    finite = tr.update(x, fx)
    gx = fx - x
    slot = 0
    while tr.nstep < int(max_iter) and not tr.done():
        dx = -inv_mul(gx)
        dx = torch.where(finite[:, None], dx, torch.zeros_like(dx))
        x_new = x + dx
        fx_new = ff(x_new)
        finite_new = tr.update(x_new, fx_new)
        gx_new = fx_new - x_new
        dg = gx_new - gx
        vt = vec_inv(dx)
        denom = (vt * dg).sum(1)
        u = dx - inv_mul(dg)
        good = finite_new & (denom.abs() > 1e-30) & torch.isfinite(denom)
        safe = torch.where(good, denom, torch.ones_like(denom))
        u = torch.where(good[:, None], u / safe[:, None], torch.zeros_like(u))
        vt = torch.where(good[:, None], vt, torch.zeros_like(vt))
        U[:, slot] = u
        V[:, slot] = vt
        slot = (slot + 1) % mem
        used = min(used + 1, mem)
        # samples that hit a non-finite value restart from their best iterate with a fresh step
        x = torch.where(finite_new[:, None], x_new, tr.best_z)
        gx = torch.where(finite_new[:, None], gx_new, tr.best_fz - tr.best_z)
        finite = torch.isfinite(gx).all(1)
    return tr.result()


SOLVERS: dict[str, Callable[..., SolverResult]] = {
    "anderson": anderson,
    "broyden": broyden,
    "fixed_point_iter": fixed_point_iter,
}


def get_solver(name: str) -> Callable[..., SolverResult]:
    """The solver function registered as ``name`` (``"anderson"``, ``"broyden"``, ``"fixed_point_iter"``).

    Raises:
        ValueError: unknown ``name``; the message lists the known ones.
    """
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; choose one of {sorted(SOLVERS)}")
    return SOLVERS[name]


def solve(f: Func, z0: Tensor, solver: str = "anderson", **kwargs) -> SolverResult:
    """Find ``z`` with ``f(z) = z`` for a batch of independent problems, with the named solver.

    Args:
        f: the map, ``(B, ...) -> (B, ...)``: sample ``b`` of ``f(z)`` may depend only on sample ``b`` of ``z``.
            Called under ``torch.no_grad()``.
        z0: the initial state, shape ``(B, ...)`` with ``B >= 1`` (e.g. zeros, or a previous fixed point to
            warm-start from). The result has its shape, device and dtype.
        solver: ``"anderson"`` (default), ``"broyden"`` or ``"fixed_point_iter"``.
        **kwargs: the solver's options: ``max_iter``, ``tol``, ``stop_mode`` for all (defaults in
            :mod:`deqfusion.deq.defaults`), and those of :func:`anderson`, :func:`broyden` or
            :func:`fixed_point_iter`.

    Returns:
        A :class:`~deqfusion.deq.result.SolverResult` (``z``, ``fz``, ``nstep``, per-sample ``rel_residual``,
        ``converged``, ``nonfinite``, traces, ``status``).

    Raises:
        ValueError: an empty batch, an unknown solver, or an invalid option.

    Example:
        ```python
        W = 0.1 * torch.randn(16, 16)
        res = solve(lambda z: torch.tanh(z @ W + 1.0), torch.zeros(8, 16), max_iter=50, tol=1e-6)
        res.status, res.nstep, res.rel_residual.max()     # ("converged", ~10, < 1e-6)
        ```
    """
    if z0.dim() < 1 or z0.shape[0] == 0:
        raise ValueError(f"the initial state needs a non-empty batch dimension, got shape {tuple(z0.shape)}")
    return get_solver(solver)(f, z0, **kwargs)
