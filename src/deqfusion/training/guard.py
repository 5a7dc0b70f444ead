"""Divergence guard: never take an optimiser step on non-finite values.

A DEQ layer can diverge mid-training: the forward solve meets NaN/inf, its residual blows up, the adjoint solve of
the implicit backward fails, or the loss/gradients become non-finite. :class:`DivergenceGuard` wraps one training
step (forward, loss, backward, clipping, optimiser step) and checks, before the optimiser step:

* the loss is finite;
* every DEQ layer called in the step (found by forward hooks on the model's :class:`~deqfusion.deq.layer.DEQLayer`
  modules, which every DEQ fusion holds) reports a finite forward solve and, when it ran an implicit backward, a
  finite adjoint solve;
* optionally, the largest per-sample relative residual of those solves is at most ``max_residual``;
* the gradient norm is finite.

On a failed check the step's policy decides:

* ``"skip"``: zero the gradients, do not step; the event is counted and logged;
* ``"phantom"``: redo the step once with the DEQ modules' backward switched to a phantom gradient
  (``phantom_steps`` damped unrolled steps from the returned state; no adjoint solve, which is what fails when the
  state is not a fixed point), then skip if that too fails. A non-finite *forward* is not fixable this way and is
  skipped;
* ``"raise"``: raise :class:`TrainingDiverged` at once.

``max_consecutive`` skipped steps in a row raise :class:`TrainingDiverged` (training that never steps is not
training). After every step the parameters are checked: they can never silently become NaN.

During a guarded step the DEQ modules run with ``on_nonfinite="return"``, so that a failed solve is reported (and
counted) rather than raised from deep inside the model, and so that, under distributed data parallel training,
every process still runs its backward pass: the skip decision is reduced across processes (any process failing
means all skip), so the replicas never drift apart.

Counters and the recent events are in :meth:`DivergenceGuard.state_dict` (JSON-friendly; trainers store it in
their checkpoints and results).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..deq.backward import DEQOutput
from ..deq.layer import DEQLayer
from ..errors import RunFailed

log = logging.getLogger(__name__)

__all__ = ["POLICIES", "TrainingDiverged", "GuardConfig", "StepReport", "DivergenceGuard"]

POLICIES = ("skip", "phantom", "raise")

#: event kinds, in the order they are checked
EVENT_KINDS = ("nonfinite_loss", "forward_nonfinite", "forward_residual", "backward_nonfinite",
               "backward_residual", "nonfinite_grad")


class TrainingDiverged(RunFailed, RuntimeError):
    """Training cannot continue: the loss or the weights became non-finite, or too many steps were skipped."""

    hint = ("lower the learning rate or raise the Jacobian regularisation, or try another seed; see the divergence "
            "guard in docs/robustness.md")


@dataclass
class GuardConfig:
    """Settings of :class:`DivergenceGuard`.

    Attributes:
        policy: ``"skip"``, ``"phantom"`` or ``"raise"`` (see the module docstring).
        max_residual: bound on the largest per-sample relative residual of the forward solve and of the implicit
            backward's adjoint solve (None: no bound; non-finite values are always caught).
        max_consecutive: raise after this many skipped steps in a row.
        phantom_steps, phantom_tau: the fallback backward of the ``"phantom"`` policy.
        max_logged: log this many events as warnings, later ones at debug level.
    """

    policy: str = "skip"
    max_residual: float | None = None
    max_consecutive: int = 25
    phantom_steps: int = 5
    phantom_tau: float = 1.0
    max_logged: int = 20

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"guard policy must be one of {POLICIES}, got {self.policy!r}")
        if self.max_residual is not None and not self.max_residual > 0:
            raise ValueError(f"max_residual must be positive or None, got {self.max_residual}")
        if self.max_consecutive < 1:
            raise ValueError(f"max_consecutive must be >= 1, got {self.max_consecutive}")
        if self.phantom_steps < 1 or not 0 < self.phantom_tau <= 1:
            raise ValueError("phantom_steps must be >= 1 and phantom_tau in (0, 1]")


@dataclass
class StepReport:
    """What :meth:`DivergenceGuard.step` returns.

    Attributes:
        stepped: the optimiser step was taken.
        loss: the step's loss (detached; from the phantom retry when that was taken).
        output: whatever the closure returned beside the loss.
        reasons: the failed checks (empty when the first attempt passed).
        action: ``"step"``, ``"phantom"`` (stepped with the fallback gradient) or ``"skip"``.
        grad_norm: total gradient norm before clipping (NaN when not computed).
    """

    stepped: bool
    loss: Tensor
    output: object = None
    reasons: list = field(default_factory=list)
    action: str = "step"
    grad_norm: float = math.nan


def _deq_modules(model: nn.Module) -> list[DEQLayer]:
    return [m for m in model.modules() if isinstance(m, DEQLayer)]


def _any_across_processes(flag: bool, device: torch.device) -> bool:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def _grad_norm(params: list[nn.Parameter], clip: float | None) -> Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    if clip is not None:
        # returns the norm before clipping; with a non-finite norm the (discarded) gradients become NaN
        return nn.utils.clip_grad_norm_(params, clip)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach()) for g in grads]))


class DivergenceGuard:
    """Checks and takes (or skips) training steps of ``model``; see the module docstring.

    Args:
        model: the model being trained (DEQ fusion modules inside it are found and hooked).
        config: a :class:`GuardConfig` (default: skip on non-finite values, no residual bound).
    """

    def __init__(self, model: nn.Module, config: GuardConfig | None = None):
        self.config = config or GuardConfig()
        self.deq_modules = _deq_modules(model)
        self._infos: list = []
        self._recording = False
        self._hooks = [m.register_forward_hook(self._capture) for m in self.deq_modules]
        self.counts: dict[str, int] = {k: 0 for k in EVENT_KINDS}
        self.steps = 0
        self.skipped = 0
        self.phantom_steps_taken = 0
        self.consecutive = 0
        self.num_events = 0
        self.events: list[dict] = []

    # ---------------------------------------------------------------------------------------------- hooks
    def _capture(self, module, inputs, output) -> None:
        if self._recording and isinstance(output, DEQOutput):
            self._infos.append(output)

    def close(self) -> None:
        """Remove the forward hooks."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    @contextlib.contextmanager
    def _recording_step(self, phantom: bool):
        changes: dict = {"on_nonfinite": "return"}
        if phantom:
            changes.update(b_mode="phantom", phantom_steps=self.config.phantom_steps,
                           phantom_tau=self.config.phantom_tau)
        with contextlib.ExitStack() as stack:
            for m in self.deq_modules:
                stack.enter_context(m.override(**changes))
            self._infos = []
            self._recording = True
            try:
                yield
            finally:
                self._recording = False

    # ----------------------------------------------------------------------------------------- checking
    def _forward_reasons(self, loss: Tensor, check_residual: bool) -> list[str]:
        reasons = []
        if not bool(torch.isfinite(loss.detach()).all()):
            reasons.append("nonfinite_loss")
        bound = self.config.max_residual if check_residual else None
        for info in self._infos:
            fwd = getattr(info, "forward", None)
            if fwd is None:
                continue
            if fwd.status == "nonfinite" or not bool(torch.isfinite(fwd.rel_residual).all()):
                reasons.append("forward_nonfinite")
            elif bound is not None and fwd.rel_residual.numel() and float(fwd.rel_residual.max()) > bound:
                reasons.append("forward_residual")
        return reasons

    def _backward_reasons(self, grad_norm: Tensor) -> list[str]:
        reasons = []
        bound = self.config.max_residual
        for info in self._infos:
            bwd = getattr(info, "backward", None)
            if bwd is None or not bwd.ran or bwd.rel_residual is None:
                continue
            if bwd.status == "nonfinite" or not bool(torch.isfinite(bwd.rel_residual).all()):
                reasons.append("backward_nonfinite")
            elif bound is not None and bwd.rel_residual.numel() and float(bwd.rel_residual.max()) > bound:
                reasons.append("backward_residual")
        if not bool(torch.isfinite(grad_norm).all()):
            reasons.append("nonfinite_grad")
        return reasons

    def _attempt(self, closure, optimizer, params, clip, device, phantom: bool):
        optimizer.zero_grad(set_to_none=True)
        with self._recording_step(phantom):
            loss, output = closure()
            # the phantom gradient does not assume a fixed point: a large forward residual is what it is for
            reasons = self._forward_reasons(loss, check_residual=not phantom)
            # always run the backward pass: under DDP every process must join the gradient all-reduce
            loss.backward()
            grad_norm = _grad_norm(params, clip)
            reasons += self._backward_reasons(grad_norm)
        bad = _any_across_processes(bool(reasons), device)
        if bad and not reasons:
            reasons = ["other_process"]
        return loss.detach(), output, sorted(set(reasons), key=_reason_order), float(grad_norm)

    # ------------------------------------------------------------------------------------------- the step
    def step(self, closure: Callable[[], tuple[Tensor, object]], optimizer: torch.optim.Optimizer,
             params: Iterable[nn.Parameter] | None = None, clip_norm: float | None = None,
             where: str = "") -> StepReport:
        """Run one guarded step.

        Args:
            closure: computes the forward pass and the loss; returns ``(loss, anything)``. It must not call
                ``backward()`` (the guard does, possibly twice).
            optimizer: stepped only when every check passed.
            params: the parameters to check and clip (default: every parameter the optimiser holds).
            clip_norm: gradient-norm clipping threshold (None: no clipping).
            where: a label for the log messages and events (e.g. ``"epoch 3 batch 7"``).
        """
        if params is None:
            params = [p for g in optimizer.param_groups for p in g["params"]]
        params = list(params)
        device = params[0].device if params else torch.device("cpu")
        self.steps += 1
        loss, output, reasons, gnorm = self._attempt(closure, optimizer, params, clip_norm, device, False)
        action = "step"
        if reasons:
            fixable = "forward_nonfinite" not in reasons and "other_process" not in reasons
            if self.config.policy == "raise":
                self._record(reasons, "raise", where)
                optimizer.zero_grad(set_to_none=True)
                raise TrainingDiverged(f"divergence at {where or f'step {self.steps}'}: {', '.join(reasons)}")
            action = "skip"
            if self.config.policy == "phantom" and self.deq_modules and fixable:
                loss2, output2, reasons2, gnorm2 = self._attempt(closure, optimizer, params, clip_norm, device,
                                                                 True)
                if not reasons2:
                    loss, output, gnorm, action = loss2, output2, gnorm2, "phantom"
            self._record(reasons, action, where)
        if action == "skip":
            optimizer.zero_grad(set_to_none=True)
            self.skipped += 1
            self.consecutive += 1
            if self.consecutive >= self.config.max_consecutive:
                raise TrainingDiverged(
                    f"{self.consecutive} training steps in a row were skipped as divergent (last at "
                    f"{where or f'step {self.steps}'}: {', '.join(reasons)})"
                )
            return StepReport(False, loss, output, reasons, action, gnorm)
        optimizer.step()
        self.consecutive = 0
        if action == "phantom":
            self.phantom_steps_taken += 1
        self.check_parameters(params, where)
        return StepReport(True, loss, output, reasons, action, gnorm)

    def check_parameters(self, params: Iterable[Tensor], where: str = "") -> None:
        """Raise :class:`TrainingDiverged` if any parameter is NaN or inf."""
        for p in params:
            if not bool(torch.isfinite(p.detach()).all()):
                raise TrainingDiverged(f"parameters became non-finite at {where or f'step {self.steps}'}")

    def _record(self, reasons: list[str], action: str, where: str) -> None:
        for r in reasons:
            if r in self.counts:
                self.counts[r] += 1
        event = {"step": self.steps, "where": where, "reasons": list(reasons), "action": action}
        self.events.append(event)
        del self.events[:-100]  # keep the most recent ones
        self.num_events += 1
        level = logging.WARNING if self.num_events <= self.config.max_logged else logging.DEBUG
        log.log(level, "divergence guard: %s at %s -> %s (%d event(s) so far)", ", ".join(reasons),
                where or f"step {self.steps}", action, self.num_events)

    # ------------------------------------------------------------------------------------------- state
    def summary(self) -> dict:
        """Counters as a JSON-friendly dict."""
        return {"policy": self.config.policy, "max_residual": self.config.max_residual, "steps": self.steps,
                "skipped": self.skipped, "phantom_fallback_steps": self.phantom_steps_taken,
                "num_events": self.num_events, "events": dict(self.counts)}

    def state_dict(self) -> dict:
        return {"counts": dict(self.counts), "steps": self.steps, "skipped": self.skipped,
                "phantom_steps_taken": self.phantom_steps_taken, "consecutive": self.consecutive,
                "num_events": self.num_events, "events": [dict(e) for e in self.events]}

    def load_state_dict(self, state: dict) -> None:
        self.counts.update({k: int(v) for k, v in state.get("counts", {}).items()})
        self.steps = int(state.get("steps", 0))
        self.skipped = int(state.get("skipped", 0))
        self.phantom_steps_taken = int(state.get("phantom_steps_taken", 0))
        self.consecutive = int(state.get("consecutive", 0))
        self.num_events = int(state.get("num_events", 0))
        self.events = [dict(e) for e in state.get("events", [])]


def _reason_order(r: str) -> int:
    return EVENT_KINDS.index(r) if r in EVENT_KINDS else len(EVENT_KINDS)
