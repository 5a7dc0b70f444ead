"""A DEQ layer object: how a fixed point is solved and differentiated, declared once.

:class:`DEQLayer` owns the forward solver settings, the backward mode (implicit or phantom) and its settings, what
to do with a solve that meets NaN/inf, the Hutchinson probes of the Jacobian penalty, and an optional per-sample
warm-start cache. A model that contains a fixed point holds one and calls it with its map::

    self.deq = DEQLayer(f_max_iter=30)          # any option left out takes the library default (deq.defaults)
    ...
    out = self.deq(f, z0)                       # out.z: f(z*), attached; out.jac_loss; out.forward / out.backward

It is an ``nn.Module`` without parameters, so it follows the parent's ``train()`` / ``eval()`` and can be found
with ``model.modules()``. :meth:`DEQLayer.override` switches options for a block of code (e.g. a phantom backward
for one training step); :meth:`DEQLayer.add_arguments` / :meth:`DEQLayer.options_from_args` give a command-line
tool the same option names and defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from ..errors import DEQDivergenceError
from . import defaults as D
from .backward import B_MODES, SOLVE_OPTIONS, DEQOutput, Func, deq_forward
from .jacobian import jac_frobenius_sq
from .result import SolverResult, zero_loss
from .solvers import SOLVERS
from .warm_start import FixedPointCache

log = logging.getLogger(__name__)

__all__ = ["DEQLayer", "OPTIONS", "NONFINITE_ACTIONS"]

NONFINITE_ACTIONS = ("raise", "return")

#: the options of a :class:`DEQLayer`, with their defaults
OPTIONS: dict = dict(D.DEFAULTS, jac_in_eval=False)

_HELP = {
    "f_solver": "forward fixed-point solver",
    "f_max_iter": "forward solver iteration budget",
    "f_tol": "per-sample tolerance of the forward solve",
    "f_stop_mode": "residual the forward tolerance applies to: relative or absolute",
    "b_mode": "gradient through the fixed point: exact implicit differentiation or phantom gradient",
    "b_solver": "solver of the implicit backward's adjoint fixed point",
    "b_max_iter": "adjoint solver iteration budget",
    "b_tol": "per-sample tolerance of the adjoint solve",
    "b_stop_mode": "residual the adjoint tolerance applies to",
    "phantom_steps": "damped unrolled steps of the phantom gradient",
    "phantom_tau": "damping of the phantom gradient's steps",
    "jac_n_probes": "Gaussian probes of the Jacobian penalty in training (0 disables it)",
    "anderson_m": "Anderson memory",
    "anderson_lam": "Anderson regulariser (relative to the mean squared residual)",
    "anderson_beta": "Anderson mixing",
    "on_nonfinite": "a forward solve that meets NaN/inf: raise, or return the best finite iterates",
    "jac_in_eval": "also compute the Jacobian penalty in evaluation mode",
}

_CHOICES = {
    "f_solver": tuple(SOLVERS), "b_solver": tuple(SOLVERS), "f_stop_mode": ("rel", "abs"),
    "b_stop_mode": ("rel", "abs"), "b_mode": B_MODES, "on_nonfinite": NONFINITE_ACTIONS,
}


def _checked(opts: dict) -> dict:
    """Validate and normalise a full option dict; raises ``ValueError`` naming the bad option."""
    out = dict(opts)
    for key, choices in _CHOICES.items():
        if out[key] not in choices:
            raise ValueError(f"{key} must be one of {choices}, got {out[key]!r}")
    for key in ("f_max_iter", "b_max_iter", "phantom_steps", "anderson_m"):
        out[key] = int(out[key])
        if out[key] < 1:
            raise ValueError(f"{key} must be >= 1, got {out[key]}")
    for key in ("f_tol", "b_tol", "anderson_lam"):
        out[key] = float(out[key])
        if not out[key] >= 0:
            raise ValueError(f"{key} must be >= 0, got {out[key]}")
    out["phantom_tau"] = float(out["phantom_tau"])
    if not 0 < out["phantom_tau"] <= 1:
        raise ValueError(f"phantom_tau must be in (0, 1], got {out['phantom_tau']}")
    out["anderson_beta"] = float(out["anderson_beta"])
    if not out["anderson_beta"] > 0:
        raise ValueError(f"anderson_beta must be positive, got {out['anderson_beta']}")
    out["jac_n_probes"] = int(out["jac_n_probes"])
    if out["jac_n_probes"] < 0:
        raise ValueError(f"jac_n_probes must be >= 0, got {out['jac_n_probes']}")
    out["jac_in_eval"] = bool(out["jac_in_eval"])
    return out


class DEQLayer(nn.Module):
    """Solve ``z* = f(z*)`` and attach ``f(z*)`` to the graph, with one set of options (see the module docstring).

    Every keyword argument is one of :data:`OPTIONS` (the names of :func:`~deqfusion.deq.backward.deq_forward`'s
    arguments plus ``jac_n_probes``, ``jac_in_eval``, ``anderson_m/lam/beta`` and ``on_nonfinite``); the defaults
    are those of :mod:`deqfusion.deq.defaults`.
    """

    def __init__(self, **options):
        super().__init__()
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise TypeError(f"unknown DEQ option(s) {unknown}; the options are {sorted(OPTIONS)}")
        self._options = _checked({**OPTIONS, **options})
        self.cache: FixedPointCache | None = None
        #: how messages name this layer (an owner may set it, e.g. "DEQ fusion")
        self.label = "DEQ"
        self.register_load_state_dict_pre_hook(self._drop_cache_on_load)

    # ------------------------------------------------------------------------------------------- options
    @property
    def options(self) -> dict:
        """The current options (a copy)."""
        return dict(self._options)

    @property
    def solver_config(self) -> dict:
        """The options handed to :func:`~deqfusion.deq.backward.deq_forward` (a copy)."""
        return {k: self._options[k] for k in SOLVE_OPTIONS}

    @property
    def anderson_kwargs(self) -> dict:
        o = self._options
        return dict(m=o["anderson_m"], lam=o["anderson_lam"], beta=o["anderson_beta"])

    def __getattr__(self, name: str):
        options = self.__dict__.get("_options")
        if options is not None and name in options:
            return options[name]
        return super().__getattr__(name)

    def set_options(self, **changes) -> None:
        """Change options for good (validated; unknown names raise)."""
        unknown = sorted(set(changes) - set(OPTIONS))
        if unknown:
            raise TypeError(f"unknown DEQ option(s) {unknown}; the options are {sorted(OPTIONS)}")
        self._options = _checked({**self._options, **changes})

    @contextlib.contextmanager
    def override(self, **changes) -> Iterator[DEQLayer]:
        """Switch options inside a ``with`` block and restore them on exit (also on an exception), e.g.
        ``with layer.override(b_mode="phantom", phantom_steps=5): loss.backward()``.

        The backward pass reads the options that were current when the forward pass ran, so the block must hold
        the forward pass.
        """
        saved = self._options
        self.set_options(**changes)
        try:
            yield self
        finally:
            self._options = saved

    def _solver_kwargs(self, name: str) -> dict:
        return self.anderson_kwargs if name == "anderson" else {}

    # ------------------------------------------------------------------------------------------- solving
    def forward(self, f: Func, z0: Tensor, *, sample_ids: Tensor | None = None, warm: bool = True,
                jac: bool | None = None) -> DEQOutput:
        """Solve from ``z0`` and return :class:`~deqfusion.deq.backward.DEQOutput` with ``jac_loss`` filled in.

        ``sample_ids``: the ``(B,)`` data-set indices of the samples, for the warm-start cache
        (:meth:`enable_warm_start`): in training (or with the cache's ``in_eval``) the solve starts from each
        sample's stored fixed point (where there is one and ``warm`` is true; ``warm=False`` keeps ``z0``) and the
        fixed points found are stored. ``jac``: compute the Jacobian penalty (default: in training, or with
        ``jac_in_eval``; only when a graph exists and ``jac_n_probes > 0``). A forward solve that met NaN/inf
        raises :class:`~deqfusion.errors.DEQDivergenceError` unless ``on_nonfinite="return"``.
        """
        o = self._options
        ids = None
        if sample_ids is not None:
            if self.cache is None:
                raise ValueError("sample_ids were given but warm start is off: call enable_warm_start(num_samples) "
                                 "first")
            ids = self.cache.check_ids(sample_ids, z0.shape[0], z0.device)
            if not (self.training or self.cache.in_eval):
                ids = None
            elif warm:
                z0 = self.cache.lookup(ids, z0)
        out = deq_forward(
            f, z0, **self.solver_config,
            f_solver_kwargs=self._solver_kwargs(o["f_solver"]), b_solver_kwargs=self._solver_kwargs(o["b_solver"]),
        )
        self.check_finite(out.forward, output=out.z)
        if ids is not None:
            self.cache.update(ids, out.forward.z, keep=torch.isfinite(out.forward.abs_residual))
        if jac is None:
            jac = self.training or o["jac_in_eval"]
        if jac and o["jac_n_probes"] > 0 and out.fz is not None:
            out.jac_loss = jac_frobenius_sq(out.fz, out.z_leaf, o["jac_n_probes"])
        else:
            out.jac_loss = zero_loss(z0)
        return out

    # ------------------------------------------------------------------------------------------- warm start
    def enable_warm_start(self, num_samples: int, in_eval: bool = False) -> FixedPointCache:
        """Keep each sample's fixed point (see :class:`~deqfusion.deq.warm_start.FixedPointCache`) and start its
        next solve there; the forward pass then takes ``sample_ids``. Returns the (new, empty) cache."""
        self.cache = FixedPointCache(num_samples, in_eval)
        return self.cache

    def disable_warm_start(self) -> None:
        self.cache = None

    @staticmethod
    def _drop_cache_on_load(module: DEQLayer, *args, **kwargs) -> None:
        # loaded parameters make every stored fixed point stale: start afresh
        if module.cache is not None:
            module.cache.clear()

    def check_finite(self, res: SolverResult, what: str = "forward solve", output: Tensor | None = None) -> None:
        """Apply ``on_nonfinite`` to a solve that met NaN/inf (nothing to do otherwise). With ``"return"`` the
        warning says how many of the returned ``output`` rows (default: ``res.fz``) are not finite."""
        if res.status != "nonfinite":
            return
        n_bad = int(res.nonfinite.sum())
        msg = (f"{self.label} {what} met non-finite values in {n_bad} of {res.nonfinite.numel()} samples after "
               f"{res.nstep} steps")
        if self._options["on_nonfinite"] == "raise":
            raise DEQDivergenceError(msg)
        out = res.fz if output is None else output.detach()
        rows = ~torch.isfinite(out.reshape(out.shape[0], -1)).all(1)
        n_out = int(rows.sum())
        if n_out:
            log.warning("%s; returning each sample's lowest-residual iterate: %d of %d outputs are not finite (no "
                        "iterate of theirs had a finite image)", msg, n_out, rows.numel())
        else:
            log.warning("%s; returning the lowest-residual finite iterates (every output is finite)", msg)

    # ------------------------------------------------------------------------------------------- command lines
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, prefix: str = "",
                      defaults: dict | None = None) -> None:
        """Add one ``--PREFIX-OPTION`` argument per option (``--f-max-iter``, ``--b-mode``, ...) with the library
        defaults (or ``defaults`` where given); :meth:`options_from_args` reads them back."""
        values = {**OPTIONS, **(defaults or {})}
        for key, value in values.items():
            flag = "--" + (prefix + key).replace("_", "-")
            dest = (prefix + key).replace("-", "_")
            if isinstance(OPTIONS[key], bool):
                parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=value,
                                    help=_HELP[key])
            else:
                kind = type(OPTIONS[key])
                parser.add_argument(flag, dest=dest, type=kind, default=value, choices=_CHOICES.get(key),
                                    help=f"{_HELP[key]} (default: {value})")

    @staticmethod
    def options_from_args(args: argparse.Namespace, prefix: str = "") -> dict:
        """The options :meth:`add_arguments` added, as a dict (keyword arguments for a DEQ layer or DEQ fusion)."""
        return _checked({k: getattr(args, (prefix + k).replace("-", "_")) for k in OPTIONS})

    @classmethod
    def from_args(cls, args: argparse.Namespace, prefix: str = "") -> DEQLayer:
        return cls(**cls.options_from_args(args, prefix))

    def extra_repr(self) -> str:
        o = self._options
        changed = {k: v for k, v in o.items() if v != OPTIONS[k]}
        return ", ".join(f"{k}={v!r}" for k, v in changed.items())
