"""Convergence of a DEQ fusion's fixed-point solve, per component of the joint state.

:func:`residual_traces` runs a solver on a trained :class:`~deqfusion.fusion.DEQFusion`'s joint map ``F`` (the
one ``fusion.make_map`` builds from the inputs) and records, at every solver step, each sample's relative
residual ``||F(z)_c - z_c|| / (||F(z)_c|| + eps)`` for every component ``c`` of the state (each per-modality
block and the fusion block) and for the whole state (the solvers' own ``rel_trace``). With
``solver="fixed_point_iter"`` the steps are those of the weight-tied network ``z <- F(z)``, the unrolled
fusion's forward pass.

:func:`band_summary` reduces the per-sample traces to a mean and a central band (default 95 %: the 2.5th and
97.5th percentiles over samples) per step, and :func:`steps_to_reach` reads off when the mean residual first
reached given levels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ..deq.solvers import EPS, solve
from ..fusion.deq_fusion import DEQFusion

__all__ = ["component_names", "residual_traces", "band_summary", "steps_to_reach", "JOINT"]

#: name of the whole-state entry in :func:`residual_traces`'s result
JOINT = "joint state"


def component_names(fusion: DEQFusion) -> list[str]:
    """Names of the state's components in slot order: one per modality block (its name, or ``modality i``),
    then ``fusion``; only ``fusion`` when the module has no per-modality blocks."""
    if not fusion.unimodal:
        return ["fusion"]
    n = fusion.num_modalities
    names = list(fusion.names) if fusion.names else [f"modality {i + 1}" for i in range(n)]
    return [*names, "fusion"]


@torch.no_grad()
def residual_traces(fusion: DEQFusion, xs, solver: str = "anderson", max_iter: int = 50, tol: float = 0.0,
                    mask: Tensor | None = None, names: Sequence[str] | None = None,
                    **solver_kwargs) -> dict[str, Tensor]:
    """Per-step, per-sample relative residuals of each state component while ``solver`` solves ``fusion``'s map.

    Args:
        fusion: a DEQ-type fusion module (``DEQFusion`` or ``UnrolledFusion``), usually trained.
        xs: its inputs (list of tensors, or dict by modality name), as the module receives them.
        solver: ``"anderson"``, ``"broyden"`` or ``"fixed_point_iter"`` (the weight-tied iteration).
        max_iter: solver steps; with the default ``tol=0`` every sample runs all of them, so that all traces
            have the same length.
        names: component names (default :func:`component_names`).
        solver_kwargs: extra solver options; Anderson gets the module's memory, regulariser and mixing unless
            given here.
    Returns:
        ``{component: (steps, B) tensor}`` in slot order, plus :data:`JOINT` for the whole state; on the CPU.
    """
    if not isinstance(fusion, DEQFusion):
        raise TypeError(f"convergence traces need a DEQ-type fusion, got {type(fusion).__name__}")
    xs, mask = fusion_inputs(fusion, xs, mask)
    names = list(names) if names is not None else component_names(fusion)
    x, x_fuse, mask_nb = fusion.inject(xs, mask)
    f = fusion.make_map(x, x_fuse, mask_nb)
    z0 = fusion.initial_state(x_fuse)
    if len(names) != z0.shape[1]:
        raise ValueError(f"{len(names)} component names for a state with {z0.shape[1]} components")
    per_step: list[Tensor] = []

    def recording_map(z: Tensor) -> Tensor:
        fz = f(z)
        diff = (fz - z).flatten(2).norm(dim=2)  # (B, S)
        per_step.append((diff / (fz.flatten(2).norm(dim=2) + EPS)).cpu())
        return fz

    kwargs = dict(fusion.anderson_kwargs) if solver == "anderson" else {}
    kwargs.update(solver_kwargs)
    res = solve(recording_map, z0, solver=solver, max_iter=max_iter, tol=tol, **kwargs)
    stacked = torch.stack(per_step)  # (steps, B, S)
    out = {name: stacked[:, :, i] for i, name in enumerate(names)}
    out[JOINT] = res.rel_trace.cpu()
    return out


def fusion_inputs(fusion: DEQFusion, xs, mask: Tensor | None = None):
    """Validate and order inputs as the module's ``forward`` does: ``(list of tensors, mask)``."""
    from ..fusion.base import check_inputs

    return check_inputs(xs, fusion.names, fusion.in_dims, mask, fusion.feature_dims)


def band_summary(traces: Mapping[str, Tensor], band: float = 0.95) -> dict[str, dict[str, list[float]]]:
    """``{component: {"mean", "lo", "hi", "median"}}`` over samples at each step (lists of floats); ``lo``/``hi``
    are the ``(1 - band) / 2`` and ``(1 + band) / 2`` quantiles. Non-finite residuals are left out."""
    if not 0 < band < 1:
        raise ValueError(f"band must lie in (0, 1), got {band}")
    q = torch.tensor([(1 - band) / 2, 0.5, (1 + band) / 2], dtype=torch.float64)
    out = {}
    for name, t in traces.items():
        t = t.double()
        mean, lo, med, hi = [], [], [], []
        for row in t:
            row = row[torch.isfinite(row)]
            if row.numel() == 0:
                mean.append(float("nan"))
                lo.append(float("nan"))
                med.append(float("nan"))
                hi.append(float("nan"))
                continue
            qs = torch.quantile(row, q)
            mean.append(float(row.mean()))
            lo.append(float(qs[0]))
            med.append(float(qs[1]))
            hi.append(float(qs[2]))
        out[name] = {"mean": mean, "lo": lo, "median": med, "hi": hi}
    return out


def steps_to_reach(curve: Sequence[float], levels: Sequence[float] = (1e-2, 1e-3, 1e-4)) -> dict[str, int | None]:
    """First step (1-based) at which ``curve`` is at or below each level, None if never."""
    out: dict[str, int | None] = {}
    for lev in levels:
        out[f"{lev:g}"] = next((i + 1 for i, v in enumerate(curve) if v <= lev), None)
    return out
