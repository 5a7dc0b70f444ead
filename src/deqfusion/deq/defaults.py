"""The library's defaults for a DEQ layer, in one place.

Every entry point (:func:`~deqfusion.deq.backward.deq_forward`, :func:`~deqfusion.deq.solvers.solve`, the DEQ
layer object and the fusion modules built on it) takes its defaults from here, so a user who passes nothing gets
one consistent configuration. ``docs/defaults.md`` lists each value with the measurement behind it.

The budgets and tolerances assume a map that is contractive near its fixed point (the fusion module's default
initialisation makes it so at the start of training, and the Jacobian penalty keeps it so): then Anderson
acceleration reaches a relative residual of 1e-3 in a handful of iterations and the budget of 30 is a guard, not
the usual cost.
"""

from __future__ import annotations

#: forward solver and its budget / per-sample tolerance / residual kind
F_SOLVER = "anderson"
F_MAX_ITER = 30
F_TOL = 1e-3
F_STOP_MODE = "rel"

#: backward: exact implicit differentiation, the adjoint fixed point solved with the same budget and tolerance
B_MODE = "implicit"
B_SOLVER = "anderson"
B_MAX_ITER = 30
B_TOL = 1e-3
B_STOP_MODE = "rel"

#: phantom gradient (used only with ``b_mode="phantom"``): one undamped step is the Jacobian-free backward
PHANTOM_STEPS = 1
PHANTOM_TAU = 1.0

#: Hutchinson probes of the Jacobian penalty computed in training (0 disables it)
JAC_N_PROBES = 1

#: the recommended weight of the Jacobian penalty in the loss: ``loss = task_loss + JAC_LOSS_WEIGHT * jac_loss``
#: (``jac_loss`` is ``||J||_F^2`` divided by the number of state entries, so the weight does not depend on the width)
JAC_LOSS_WEIGHT = 10.0

#: Anderson memory, (relative) Tikhonov regulariser and mixing
ANDERSON_M = 6
ANDERSON_LAM = 1e-4
ANDERSON_BETA = 1.0

#: what a forward solve that met NaN/inf does: raise, or return the lowest-residual finite iterates
ON_NONFINITE = "raise"

#: the whole configuration as keyword arguments (the names of :class:`~deqfusion.deq.layer.DEQLayer`'s arguments)
DEFAULTS: dict = dict(
    f_solver=F_SOLVER, f_max_iter=F_MAX_ITER, f_tol=F_TOL, f_stop_mode=F_STOP_MODE,
    b_mode=B_MODE, b_solver=B_SOLVER, b_max_iter=B_MAX_ITER, b_tol=B_TOL, b_stop_mode=B_STOP_MODE,
    phantom_steps=PHANTOM_STEPS, phantom_tau=PHANTOM_TAU, jac_n_probes=JAC_N_PROBES,
    anderson_m=ANDERSON_M, anderson_lam=ANDERSON_LAM, anderson_beta=ANDERSON_BETA, on_nonfinite=ON_NONFINITE,
)

__all__ = [
    "F_SOLVER", "F_MAX_ITER", "F_TOL", "F_STOP_MODE", "B_MODE", "B_SOLVER", "B_MAX_ITER", "B_TOL", "B_STOP_MODE",
    "PHANTOM_STEPS", "PHANTOM_TAU", "JAC_N_PROBES", "JAC_LOSS_WEIGHT", "ANDERSON_M", "ANDERSON_LAM",
    "ANDERSON_BETA", "ON_NONFINITE", "DEFAULTS",
]
