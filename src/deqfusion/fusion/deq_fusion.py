"""DEQFusion: fuse N modality features at the joint fixed point of per-modality blocks and a fusion block.

Usage::

    from deqfusion import DEQFusion
    fusion = DEQFusion(in_dims=[1000, 1000, 503], out_dim=500)
    fused, info = fusion([x_mrna, x_meth, x_mirna])        # fused: (B, 500)
    loss = criterion(head(fused), y) + 10.0 * info.jac_loss  # Jacobian regularisation (zero in eval mode)

Conventions (documented choices where the reference differs between modes):

* The hidden state is ``Z = [z_1, ..., z_N, z_fuse]``, started at zeros; the module returns the ``z_fuse`` part of
  ``F(Z*)``, one application past the solver's lowest-residual iterate ``Z*``, in training and evaluation alike
  (in evaluation it comes from the solver's last evaluation at ``Z*``, at no extra cost).
* Residuals are per sample and relative by default, so results do not depend on the batch size; the solve stops
  early once every sample reached ``f_tol``. Diagnostics go into the returned :class:`FusionInfo`, never printed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..deq import defaults as D
from ..deq.backward import unrolled_forward
from ..deq.layer import DEQLayer
from ..deq.result import SolverResult, zero_loss
from ..deq.solvers import ACCEPTS_OUT
from .base import FusionModule, check_inputs
from .blocks import (
    FUSION_NORMS,
    PurifyFuseBlock,
    UnimodalBlocks,
    _channel_view,
    _init_linear_,
    _lin_add,
    _sample_view,
    default_groups,
)
from .info import FusionInfo
from .registry import register_fusion

log = logging.getLogger(__name__)

INJECTIONS = ("weighted", "sum")
INITS = ("contractive", "reference")

#: output gain of the per-modality blocks under ``init="contractive"``
UNIMODAL_GAIN = 0.25


def _run_eagerly(fn, *args):
    # wrapped on use: torch.compiler.disable imports torch._dynamo, whose import alone made DistributedDataParallel
    # processes hang at exit
    return torch.compiler.disable(fn)(*args)


class _Projection(nn.Module):
    """Per-modality channel projection ``in_dim -> out_dim`` (Linear on vectors, 1x1 conv on sequences)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim))
        self.bias = nn.Parameter(torch.empty(out_dim))
        _init_linear_(self.weight, self.bias, in_dim)

    def forward(self, x: Tensor) -> Tensor:
        return _lin_add(x, self.weight, _channel_view(self.bias, x.dim()))


@register_fusion("deq")
class DEQFusion(FusionModule):
    """Deep equilibrium multimodal fusion (Ni et al., 2023), as a drop-in ``nn.Module``.

    Args:
        in_dims: feature size of each modality (dimension 1 of its input). Inputs are ``(B, d_i)`` vectors or
            ``(B, C_i, L)`` sequences/maps (all with the same ``L``). A modality whose size differs from
            ``out_dim`` gets a learned projection.
        out_dim: width ``d`` of the hidden states and of the fused output.
        names: optional modality names; then inputs may also be given as a dict.
        init: ``"contractive"`` (default): the weights that feed the state back into itself through a matrix start
            at zero and the per-modality blocks' output gain at 0.25, so the joint map is contractive at
            initialisation and the first solves converge in a few iterations (see :meth:`contractive_init_`);
            ``"reference"``: the paper's initialisation (PyTorch's default for every linear map, unit GroupNorm
            gains), whose map is often not contractive at the start.
        groups: GroupNorm groups in the per-modality blocks (the reference uses 4). Default: the largest of 4, 3,
            2, 1 that divides ``out_dim``.
        fusion_groups: GroupNorm groups in the fusion block (default: ``groups``; the CMU-MOSI model uses 1).
        fusion_norm: ``"relu_gn"`` (``GN(ReLU(u))``, the paper) or ``"gn_relu"`` (the reference's MM-IMDB copy).
        injection: ``"weighted"`` (``sum_i w_i x_i + b`` with learnable scalars) or ``"sum"`` (plain sum, the
            reference's BRCA variant).
        gate_activation: squashing of the purify gate: None (the paper), ``"sigmoid"`` or ``"tanh"``.
        unimodal: include the per-modality blocks (False: the reference's "fuse only" variant, where the fusion
            block purifies the injected features directly and only ``z_fuse`` is solved for).
        purify: gate each modality by the fused state before combining (False: an ablation that sums them).
        f_solver, f_max_iter, f_tol, f_stop_mode: forward solve (``"anderson"``, ``"broyden"``,
            ``"fixed_point_iter"``; budget; per-sample tolerance; ``"rel"`` or ``"abs"`` residual).
        b_mode: ``"implicit"`` (exact implicit differentiation) or ``"phantom"`` (``phantom_steps`` damped
            unrolled steps from the fixed point; 1 step with ``phantom_tau=1`` is the Jacobian-free backward).
        b_solver, b_max_iter, b_tol, b_stop_mode: the adjoint solve of the implicit backward.
        jac_n_probes: Gaussian probes of the Hutchinson Jacobian estimate computed in training (0 disables it).
        jac_in_eval: also compute the Jacobian estimate in evaluation mode (when gradients are enabled).
        anderson_m, anderson_lam, anderson_beta: Anderson memory, regulariser and mixing.
        on_nonfinite: ``"raise"`` (default) raises :class:`~deqfusion.errors.DEQDivergenceError` when the forward
            solve met NaN/inf; ``"return"`` returns the lowest-residual finite iterates and records the failed
            samples in ``info.forward.nonfinite``.

    Calling the module (see :meth:`~deqfusion.fusion.base.FusionModule.forward`) returns ``(fused, info)``:
    ``fused`` of shape ``(B, out_dim)`` (or ``(B, out_dim, L)``), and ``info.jac_loss`` (add
    ``lambda_jac * info.jac_loss`` to the loss; zero in evaluation mode), ``info.forward`` (the solve's
    :class:`~deqfusion.deq.result.SolverResult`) and ``info.backward`` (filled in by ``backward()``).

    Raises:
        ValueError: an invalid option (a non-positive width, fewer than two modalities, an unknown injection,
            normalisation, ``b_mode``, ``init`` or ``on_nonfinite``, a negative ``jac_n_probes``, a width the
            GroupNorm groups cannot split); an unknown solver name is refused at the first call.
        DEQDivergenceError: in a call, when the forward solve meets NaN/inf and ``on_nonfinite="raise"``.

    Example:
        ```python
        fusion = DEQFusion(in_dims=[1000, 1000, 503], out_dim=500)
        fused, info = fusion([x_mrna, x_methylation, x_mirna])          # fused: (B, 500)
        loss = criterion(head(fused), y) + 10.0 * info.jac_loss
        loss.backward()
        info.forward.nstep, info.forward.rel_residual.max()             # solver statistics, as data
        ```
    """

    feature_dims = None

    def __init__(
        self,
        in_dims: Sequence[int],
        out_dim: int,
        names: Sequence[str] | None = None,
        *,
        init: str = "contractive",
        groups: int | None = None,
        fusion_groups: int | None = None,
        fusion_norm: str = "relu_gn",
        injection: str = "weighted",
        gate_activation: str | None = None,
        unimodal: bool = True,
        purify: bool = True,
        f_solver: str = D.F_SOLVER,
        f_max_iter: int = D.F_MAX_ITER,
        f_tol: float = D.F_TOL,
        f_stop_mode: str = D.F_STOP_MODE,
        b_mode: str = D.B_MODE,
        b_solver: str = D.B_SOLVER,
        b_max_iter: int = D.B_MAX_ITER,
        b_tol: float = D.B_TOL,
        b_stop_mode: str = D.B_STOP_MODE,
        phantom_steps: int = D.PHANTOM_STEPS,
        phantom_tau: float = D.PHANTOM_TAU,
        jac_n_probes: int = D.JAC_N_PROBES,
        jac_in_eval: bool = False,
        anderson_m: int = D.ANDERSON_M,
        anderson_lam: float = D.ANDERSON_LAM,
        anderson_beta: float = D.ANDERSON_BETA,
        on_nonfinite: str = D.ON_NONFINITE,
    ):
        super().__init__(in_dims, names)
        out_dim = int(out_dim)
        if out_dim <= 0:
            raise ValueError(f"out_dim must be positive, got {out_dim}")
        if injection not in INJECTIONS:
            raise ValueError(f"injection must be one of {INJECTIONS}, got {injection!r}")
        if fusion_norm not in FUSION_NORMS:
            raise ValueError(f"fusion_norm must be one of {FUSION_NORMS}, got {fusion_norm!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        groups = default_groups(out_dim) if groups is None else int(groups)
        self.out_dim = out_dim
        self.injection = injection
        self.unimodal = bool(unimodal)
        n = self.num_modalities
        self.proj = nn.ModuleList(
            [nn.Identity() if d == out_dim else _Projection(d, out_dim) for d in self.in_dims]
        )
        if injection == "weighted":
            self.inj_weight = nn.Parameter(torch.ones(n))
            self.inj_bias = nn.Parameter(torch.zeros(()))
        else:
            self.register_parameter("inj_weight", None)
            self.register_parameter("inj_bias", None)
        self.blocks = UnimodalBlocks(n, out_dim, groups) if self.unimodal else None
        self.fusion = PurifyFuseBlock(out_dim, fusion_groups or groups, fusion_norm, gate_activation, purify)
        #: the fixed-point machinery: solver, backward mode, non-finite policy, Jacobian probes, warm start
        self.deq = DEQLayer(
            f_solver=f_solver, f_max_iter=f_max_iter, f_tol=f_tol, f_stop_mode=f_stop_mode, b_mode=b_mode,
            b_solver=b_solver, b_max_iter=b_max_iter, b_tol=b_tol, b_stop_mode=b_stop_mode,
            phantom_steps=phantom_steps, phantom_tau=phantom_tau, jac_n_probes=jac_n_probes, jac_in_eval=jac_in_eval,
            anderson_m=anderson_m, anderson_lam=anderson_lam, anderson_beta=anderson_beta, on_nonfinite=on_nonfinite,
        )
        self.deq.label = "DEQ fusion"
        self.init = init
        if init == "contractive":
            self.contractive_init_()

    @torch.no_grad()
    def contractive_init_(self) -> None:
        """Make the joint map contractive: zero the weights that couple the state to itself through a matrix
        (``W2`` of every per-modality block, ``W_f`` of the fusion block) and set the per-modality blocks' output
        gain (the last GroupNorm's scale) to :data:`UNIMODAL_GAIN`.

        Then the fused slot does not depend on the state, and each per-modality slot is
        ``g * GN(ReLU(u_i + z_i))`` with ``u_i`` independent of the state, whose Jacobian has norm ``g / s`` (``s``:
        the standard deviation of ``ReLU(u_i + z_i)`` within a group, about 0.5-0.6 since ``u_i`` comes out of a
        GroupNorm). Training moves the weights away from zero at once (their gradients are not zero).
        """
        if self.blocks is not None:
            self.blocks.w2.zero_()
            self.blocks.gn3.weight.fill_(UNIMODAL_GAIN)
        self.fusion.fuse_weight.zero_()

    # ------------------------------------------------------------------ pieces
    def inject(self, xs: list[Tensor | None], mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Project the inputs and build the injections.

        Returns ``(x, x_fuse, mask_nb)``: ``x`` the projected features, modality-major ``(N, B, d[, L])`` with
        absent entries zeroed; ``x_fuse`` the fused injection ``(B, d[, L])``; ``mask_nb`` the presence mask as
        ``(N, B)`` floats (None when all present).
        """
        present = [x for x in xs if x is not None]
        dims = {x.dim() for x in present}
        if len(dims) != 1:
            raise ValueError(
                "all modalities must have the same number of dimensions (all (B, d) or all (B, C, L)); got "
                + ", ".join(f"modality {i}: {tuple(x.shape)}" for i, x in enumerate(xs) if x is not None)
            )
        ndim = dims.pop()
        if ndim not in (2, 3):
            raise ValueError(f"inputs must be (B, d) or (B, C, L), got shape {tuple(present[0].shape)}")
        if ndim == 2 and self._min_group_size() == 1:
            raise ValueError(f"GroupNorm with one channel per group (width {self.out_dim}, groups "
                             f"{self._group_counts()}) maps every (B, d) vector to a constant; use fewer groups "
                             f"for vector inputs (one channel per group works only for (B, C, L) inputs)")
        projected: list[Tensor | None] = [None if x is None else p(x) for x, p in zip(xs, self.proj)]
        ref = next(p for p in projected if p is not None)
        for i, p in enumerate(projected):
            if p is not None and p.shape != ref.shape:
                label = f"modality {i}" + (f" ({self.names[i]!r})" if self.names else "")
                raise ValueError(f"{label} has shape {tuple(xs[i].shape)}; after projection every modality must "
                                 f"give {tuple(ref.shape)} (sequence lengths must match)")
        x = torch.stack([torch.zeros_like(ref) if p is None else p for p in projected])
        mask_nb = None
        if mask is not None:
            mask_nb = mask.t().to(dtype=ref.dtype)
            x = x * mask_nb.view(mask_nb.shape + (1,) * (x.dim() - 2))
        if self.injection == "weighted":
            w = self.inj_weight.to(ref.dtype).view((-1,) + (1,) * (x.dim() - 1))
            x_fuse = (w * x).sum(0) + self.inj_bias.to(ref.dtype)
        else:
            x_fuse = x.sum(0)
        return x, x_fuse, mask_nb

    def _group_counts(self) -> list[int]:
        norms = [self.blocks.gn1.groups] if self.blocks is not None else []
        return norms + [self.fusion.norm.num_groups]

    def _min_group_size(self) -> int:
        return min(self.out_dim // g for g in self._group_counts())

    def make_map(self, x: Tensor, x_fuse: Tensor, mask_nb: Tensor | None):
        """The joint map ``F`` on the packed state ``(B, S, d[, L])`` (S = N+1, or 1 without unimodal blocks)."""
        x_plus_b2 = self.blocks.prepare(x) if self.unimodal else None
        x_fuse_plus_cf = self.fusion.prepare(x_fuse)
        keep = None if mask_nb is None else [_sample_view(m, x.dim() - 1) for m in mask_nb.unbind(0)]
        keep_nb = None if mask_nb is None else mask_nb.view(mask_nb.shape + (1,) * (x.dim() - 2))
        inputs = x.unbind(0)

        views: dict = {}  # the blocks' parameter views, taken once for the solvers' evaluations

        def f(z: Tensor, out: Tensor | None = None) -> Tensor:
            zf = z.select(1, -1)
            # outside autograd (the solvers' evaluations) the blocks write straight into the packed output, which
            # may be a buffer of the solver's (``out``), and reuse the parameter views of the first evaluation
            packed = None if torch.is_grad_enabled() else (torch.empty_like(z) if out is None else out)
            if packed is not None and not views:
                views["blocks"] = self.blocks.views(z.dim()) if self.unimodal else None
                views["fusion"] = self.fusion.views(zf.dim())
            kept = views if packed is not None else {}
            if self.unimodal:
                # the unimodal slots, modality-major: strided views that the batched products read in place
                zu = self.blocks(z[:, :-1].transpose(0, 1), x_plus_b2,
                                 out=None if packed is None else packed[:, :-1].transpose(0, 1),
                                 views=kept.get("blocks"))
                if keep_nb is not None:
                    zu = zu.mul_(keep_nb) if packed is not None else zu * keep_nb
                zu = zu.unbind(0)
            else:
                zu = inputs
            zf_new = self.fusion(zu, zf, x_fuse_plus_cf, keep, out=None if packed is None else packed.select(1, -1),
                                 views=kept.get("fusion"))
            if packed is not None:
                return packed
            if not self.unimodal:
                return zf_new[:, None]
            return torch.stack(list(zu) + [zf_new], dim=1)

        setattr(f, ACCEPTS_OUT, True)
        return f

    def initial_state(self, x_fuse: Tensor) -> Tensor:
        slots = self.num_modalities + 1 if self.unimodal else 1
        return x_fuse.new_zeros((x_fuse.shape[0], slots) + tuple(x_fuse.shape[1:]))

    # ------------------------------------------------------------------ options (held by the DEQ layer)
    @property
    def solver_config(self) -> dict:
        """The solver and backward options (a copy; change them with ``self.deq.set_options`` or, for a block of
        code, ``with self.deq.override(...)``)."""
        return self.deq.solver_config

    @property
    def anderson_kwargs(self) -> dict:
        return self.deq.anderson_kwargs

    @property
    def jac_n_probes(self) -> int:
        return self.deq.jac_n_probes

    @property
    def jac_in_eval(self) -> bool:
        return self.deq.jac_in_eval

    @property
    def on_nonfinite(self) -> str:
        return self.deq.on_nonfinite

    @on_nonfinite.setter
    def on_nonfinite(self, value: str) -> None:
        self.deq.set_options(on_nonfinite=value)

    def enable_warm_start(self, num_samples: int, in_eval: bool = False):
        """Start each sample's solve from its last fixed point; the forward pass then takes ``sample_ids`` (the
        samples' indices in the data set, ``0 .. num_samples - 1``). See :class:`~deqfusion.deq.layer.DEQLayer`."""
        return self.deq.enable_warm_start(num_samples, in_eval)

    # ------------------------------------------------------------------ forward
    def forward(self, inputs, mask: Tensor | None = None, *, z0: Tensor | None = None,
                sample_ids: Tensor | None = None) -> tuple[Tensor, FusionInfo]:
        """Fuse ``inputs`` (see the class docstring).

        Args:
            z0: optional start of the solve, ``(B, S, d[, L])`` with ``S = N + 1`` slots (1 without per-modality
                blocks), e.g. ``info.forward.z`` of an earlier call; default zeros. The gradient does not depend
                on it (implicit backward).
            sample_ids: ``(B,)`` indices of the samples in the data set, for the warm-start cache
                (:meth:`enable_warm_start`).
        """
        if torch.compiler.is_compiling():
            # torch.compile of a model that holds this module compiles around it: the solver loop is data-dependent
            # (per-sample stopping) and the Jacobian penalty needs a double backward, which compiled graphs do not
            # support.
            return _run_eagerly(self._forward, inputs, mask, z0, sample_ids)
        return self._forward(inputs, mask, z0, sample_ids)

    def _forward(self, inputs, mask, z0, sample_ids) -> tuple[Tensor, FusionInfo]:
        xs, mask = check_inputs(inputs, self.names, self.in_dims, mask, self.feature_dims)
        self._check_dtype(xs)
        return self.fuse(xs, mask, z0=z0, sample_ids=sample_ids)

    def _check_dtype(self, xs: list[Tensor | None]) -> None:
        x = next(t for t in xs if t is not None)
        if x.dtype in (torch.float16, torch.bfloat16):
            raise TypeError(f"DEQFusion solves in float32 or float64, got {x.dtype} inputs: the solver's residuals "
                            f"and small least-squares solves lose their accuracy in half precision. Run the fusion "
                            f"in float32 (cast its inputs with .float(), or leave it outside torch.autocast)")
        p = next(self.parameters())
        if p.dtype != x.dtype:
            raise TypeError(f"the inputs are {x.dtype} but DEQFusion's parameters are {p.dtype}; cast one to the "
                            f"other (module.to({x.dtype}) or inputs .to({p.dtype}))")

    def fuse(self, xs, mask, *, z0: Tensor | None = None, sample_ids: Tensor | None = None
             ) -> tuple[Tensor, FusionInfo]:
        x, x_fuse, mask_nb = self.inject(xs, mask)
        f = self.make_map(x, x_fuse, mask_nb)
        start = self.initial_state(x_fuse)
        if z0 is not None:
            if not isinstance(z0, Tensor) or z0.shape != start.shape:
                shape = tuple(z0.shape) if isinstance(z0, Tensor) else type(z0).__name__
                raise ValueError(f"z0 must be a tensor of the state's shape {tuple(start.shape)}, got {shape}")
            start = z0.detach().to(dtype=start.dtype, device=start.device)
        out = self.deq(f, start, sample_ids=sample_ids)
        info = FusionInfo(jac_loss=out.jac_loss, forward=out.forward, backward=out.backward)
        return out.z[:, -1], info

    def extra_repr(self) -> str:
        c = self.solver_config
        return (f"in_dims={self.in_dims}, out_dim={self.out_dim}, injection={self.injection!r}, "
                f"unimodal={self.unimodal}, f_solver={c['f_solver']!r}, f_max_iter={c['f_max_iter']}, "
                f"f_tol={c['f_tol']}, b_mode={c['b_mode']!r}")


@register_fusion("unrolled")
class UnrolledFusion(DEQFusion):
    """The weight-tied, non-equilibrium variant: the DEQ fusion map applied ``unrolled_steps`` times from zeros,
    trained with ordinary backpropagation and no Jacobian loss (the paper's "no DEQ" ablation).

    ``info.forward`` reports the per-step relative change as its trace, for comparison with a solver.

    Args:
        in_dims, out_dim, names: as for :class:`DEQFusion`.
        unrolled_steps: how many times the map is applied (>= 1).
        **kwargs: the block options of :class:`DEQFusion` (``init``, ``groups``, ``fusion_norm``, ``injection``,
            ...); the Jacobian loss is off (``jac_n_probes=0``) unless given.

    Raises:
        ValueError: ``unrolled_steps < 1``, or an invalid :class:`DEQFusion` option.

    Example:
        ```python
        fusion = UnrolledFusion([1000, 1000, 503], 500, unrolled_steps=4)
        fused, info = fusion([x_mrna, x_methylation, x_mirna])    # (B, 500); info.forward.rel_trace: (4, B)
        ```
    """

    def __init__(self, in_dims: Sequence[int], out_dim: int, names: Sequence[str] | None = None, *,
                 unrolled_steps: int = 4, **kwargs):
        if unrolled_steps < 1:
            raise ValueError(f"unrolled_steps must be >= 1, got {unrolled_steps}")
        kwargs.setdefault("jac_n_probes", 0)
        super().__init__(in_dims, out_dim, names, **kwargs)
        self.unrolled_steps = int(unrolled_steps)

    def fuse(self, xs, mask, *, z0: Tensor | None = None, sample_ids: Tensor | None = None
             ) -> tuple[Tensor, FusionInfo]:
        if z0 is not None or sample_ids is not None:
            raise ValueError("UnrolledFusion always starts from zeros (its output depends on the start); z0 and "
                             "sample_ids apply to DEQFusion only")
        x, x_fuse, mask_nb = self.inject(xs, mask)
        f = self.make_map(x, x_fuse, mask_nb)
        z, rel_trace = unrolled_forward(f, self.initial_state(x_fuse), self.unrolled_steps)
        last = rel_trace[-1]
        nonfinite = ~torch.isfinite(z.detach().flatten(1)).all(1)
        res = SolverResult(
            z=z.detach(), fz=z.detach(), nstep=self.unrolled_steps, abs_residual=torch.full_like(last, float("nan")),
            rel_residual=last, abs_trace=torch.full_like(rel_trace, float("nan")), rel_trace=rel_trace,
            converged=torch.zeros_like(last, dtype=torch.bool), nonfinite=nonfinite,
            status="nonfinite" if bool(nonfinite.any()) else "unrolled", solver="unrolled",
        )
        self.deq.check_finite(res)
        return z[:, -1], FusionInfo(jac_loss=zero_loss(x_fuse), forward=res)

    def extra_repr(self) -> str:
        return (f"in_dims={self.in_dims}, out_dim={self.out_dim}, injection={self.injection!r}, "
                f"unimodal={self.unimodal}, unrolled_steps={self.unrolled_steps}")
