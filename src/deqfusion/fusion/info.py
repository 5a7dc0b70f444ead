"""What every fusion module returns beside the fused tensor."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from ..deq.result import BackwardStats, SolverResult

__all__ = ["FusionInfo"]


@dataclass
class FusionInfo:
    """Diagnostics returned by every fusion module beside the fused tensor.

    Attributes:
        jac_loss: differentiable scalar Jacobian regulariser (zero for fusions that have none, and outside
            training). Add ``lambda_jac * info.jac_loss`` to the loss.
        forward: the forward solve's result for DEQ fusions, else None.
        backward: the backward pass's statistics for DEQ fusions, filled in during ``backward()``, else None.
        extra: anything else a fusion wants to report (floats or tensors).
    """

    jac_loss: Tensor
    forward: SolverResult | None = None
    backward: BackwardStats | None = None
    extra: dict = field(default_factory=dict)

    @property
    def nstep(self) -> int:
        """Iterations of the forward solve (0 for fusions without one)."""
        return 0 if self.forward is None else int(self.forward.nstep)

    def summary(self) -> dict:
        """A JSON-friendly dict: ``jac_loss`` and, for DEQ fusions, the forward and backward summaries."""
        out: dict = {"jac_loss": float(self.jac_loss.detach())}
        if self.forward is not None:
            out["forward"] = self.forward.summary()
        if self.backward is not None:
            out["backward"] = self.backward.summary()
        return out
