"""Fixed points in general: solvers, gradients through them, Jacobian tools. Knows nothing about fusion."""

from .backward import DEQOutput, deq_forward, unrolled_forward
from .jacobian import jac_frobenius_sq, spectral_radius
from .layer import DEQLayer
from .result import BackwardStats, SolverResult
from .solvers import SOLVERS, anderson, broyden, fixed_point_iter, get_solver, solve

__all__ = [
    "DEQLayer", "DEQOutput", "deq_forward", "unrolled_forward", "jac_frobenius_sq", "spectral_radius", "BackwardStats",
    "SolverResult", "SOLVERS", "anderson", "broyden", "fixed_point_iter", "get_solver", "solve",
]
