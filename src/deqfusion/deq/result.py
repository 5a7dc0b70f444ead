"""Result types shared by the fixed-point solvers and the backward passes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class SolverResult:
    """What a fixed-point solve returns.

    All per-sample tensors are detached and live on the device of the state.

    Attributes:
        z: the lowest-residual iterate of each sample, in the shape of the initial state.
        fz: ``f(z)`` for that iterate (already computed by the solver, so callers need not re-evaluate).
        nstep: number of solver iterations run (each costs one evaluation of ``f``).
        abs_residual: per-sample ``||f(z) - z||`` at the returned iterate, shape ``(B,)``.
        rel_residual: per-sample ``||f(z) - z|| / (||f(z)|| + eps)`` at the returned iterate, shape ``(B,)``.
        abs_trace: per-step, per-sample absolute residuals, shape ``(nstep, B)``.
        rel_trace: per-step, per-sample relative residuals, shape ``(nstep, B)``.
        converged: per-sample flag: the residual named by ``stop_mode`` reached ``tol``.
        nonfinite: per-sample flag: some evaluation of ``f`` produced NaN or inf for that sample
            (the returned iterate is then the last finite one, or the initial state).
        status: ``"converged"`` (every sample), ``"max_iter"`` or ``"nonfinite"``.
        solver: name of the solver that produced it.
    """

    z: Tensor
    fz: Tensor
    nstep: int
    abs_residual: Tensor
    rel_residual: Tensor
    abs_trace: Tensor
    rel_trace: Tensor
    converged: Tensor
    nonfinite: Tensor
    status: str
    solver: str

    def summary(self) -> dict:
        """A JSON-friendly summary (floats and ints only): solver, nstep, status, the largest and mean relative
        residual, the largest absolute residual, the fraction of converged samples, the count of non-finite ones."""
        return {
            "solver": self.solver,
            "nstep": int(self.nstep),
            "status": self.status,
            "rel_residual_max": float(self.rel_residual.max()) if self.rel_residual.numel() else 0.0,
            "rel_residual_mean": float(self.rel_residual.mean()) if self.rel_residual.numel() else 0.0,
            "abs_residual_max": float(self.abs_residual.max()) if self.abs_residual.numel() else 0.0,
            "converged_fraction": float(self.converged.float().mean()) if self.converged.numel() else 1.0,
            "nonfinite_samples": int(self.nonfinite.sum()),
        }


@dataclass
class BackwardStats:
    """Statistics of a backward pass, filled in when ``backward()`` runs through the layer.

    Before the backward pass has run, ``ran`` is False and the other fields are empty.

    Attributes:
        mode: ``"implicit"`` or ``"phantom"``.
        ran: whether a backward pass has gone through the layer.
        nstep: iterations of the last adjoint solve (implicit) or the phantom steps taken.
        rel_residual: per-sample relative residual of the last adjoint solve, shape ``(B,)`` (implicit only).
        abs_residual: per-sample absolute residual of the last adjoint solve, shape ``(B,)`` (implicit only).
        rel_trace: per-step, per-sample relative residuals of the last adjoint solve, shape ``(nstep, B)``.
        converged: per-sample flag of the last adjoint solve.
        status: ``"not run"``; for the implicit backward ``"converged"``, ``"max_iter"`` or ``"nonfinite"``;
            ``"unrolled"`` for the phantom gradient.
        calls: how many backward passes went through the layer's output.
    """

    mode: str
    ran: bool = False
    nstep: int = 0
    rel_residual: Tensor | None = None
    abs_residual: Tensor | None = None
    rel_trace: Tensor | None = None
    converged: Tensor | None = None
    status: str = "not run"
    calls: int = 0

    def summary(self) -> dict:
        """A JSON-friendly summary: mode, whether it ran, steps, status and (when known) the residuals."""
        out = {"mode": self.mode, "ran": self.ran, "nstep": int(self.nstep), "status": self.status}
        if self.rel_residual is not None and self.rel_residual.numel():
            out["rel_residual_max"] = float(self.rel_residual.max())
            out["rel_residual_mean"] = float(self.rel_residual.mean())
        return out


def zero_loss(like: Tensor) -> Tensor:
    """A zero scalar on the device and dtype of ``like``."""
    return torch.zeros((), device=like.device, dtype=like.dtype)
