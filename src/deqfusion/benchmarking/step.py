"""Time one training step (forward solve + backward + Jacobian loss) of a fusion module on random features.

Everything is seeded: the module's initialisation and the inputs. Returns plain dicts, ready for JSON.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from ..deq.solvers import solve
from ..fusion import DEQFusion, build_fusion


def scale_fusion_weights_(module: torch.nn.Module, factor: float) -> None:
    """Multiply every weight matrix (parameters with 2+ dimensions) of ``module`` by ``factor``, in place."""
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() >= 2:
                p.mul_(factor)


def make_inputs(batch: int, width: int, modalities: int, seed: int, device="cpu", dtype=torch.float32,
                length: int | None = None) -> list[Tensor]:
    g = torch.Generator(device="cpu").manual_seed(seed)
    shape = (batch, width) if length is None else (batch, width, length)
    return [torch.randn(shape, generator=g).to(device=device, dtype=dtype) for _ in range(modalities)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t)
    return out


def peak_memory_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return None


def train_step_benchmark(
    fusion: str = "deq", batch: int = 612, width: int = 500, modalities: int = 3, repeats: int = 5,
    seed: int = 0, weight_scale: float = 1.0, lambda_jac: float = 1.0, device: str | torch.device = "cpu",
    dtype=torch.float32, length: int | None = None, inference: bool = False, measure_memory: bool = False,
    **fusion_options,
) -> dict:
    """Median wall time of one training step (or one inference forward with ``inference=True``).

    The loss is the cross-entropy of a fixed random linear classifier on the fused features against random labels,
    plus ``lambda_jac * jac_loss``; the module is reinitialised identically (seeded)
    for every configuration, then its weight matrices are multiplied by ``weight_scale``.

    With ``measure_memory=True`` one more step runs after the timed ones under
    :func:`~deqfusion.benchmarking.memory.measure_peak_memory` (untimed, as its CPU tracker slows every operator)
    and its fields are added: ``tensor_peak_mb``, ``tensor_kind``, ``rss_peak_mb``.
    """
    device = torch.device(device)
    torch.manual_seed(seed)
    module = build_fusion(fusion, [width] * modalities, width, **fusion_options).to(device=device, dtype=dtype)
    if weight_scale != 1.0:
        scale_fusion_weights_(module, weight_scale)
    xs = make_inputs(batch, width, modalities, seed + 1, device, dtype, length)
    # a fixed random linear classifier and random labels: a loss whose gradient has no special structure
    # (the gradient of mean(fused^2) is nearly orthogonal to the fusion's GroupNorm output, which makes the
    # adjoint solve trivially short)
    g = torch.Generator(device="cpu").manual_seed(seed + 2)
    head = (torch.randn(width, 5, generator=g) / width**0.5).to(device=device, dtype=dtype)
    labels = torch.randint(0, 5, (batch,), generator=g).to(device)
    last: dict = {}

    def train_step():
        module.zero_grad(set_to_none=True)
        module.train()
        out, info = module(xs)
        feats = out if out.dim() == 2 else out.mean(-1)
        loss = torch.nn.functional.cross_entropy(feats @ head, labels) + lambda_jac * info.jac_loss
        loss.backward()
        last["info"] = info

    def infer_step():
        module.eval()
        with torch.no_grad():
            _, info = module(xs)
        last["info"] = info

    peak_memory_reset(device)
    times = time_call(infer_step if inference else train_step, device, repeats)
    memory = {}
    if measure_memory:
        from .memory import measure_peak_memory

        last.clear()  # drop the previous step's graph and diagnostics before measuring
        module.zero_grad(set_to_none=True)
        memory = measure_peak_memory(infer_step if inference else train_step, device)
    info = last["info"]
    result = {
        "fusion": fusion, "mode": "inference" if inference else "train", "batch": batch, "width": width,
        "modalities": modalities, "length": length, "weight_scale": weight_scale, "device": str(device),
        "dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads(),
        "options": {k: v for k, v in fusion_options.items()},
        "median_s": statistics.median(times), "min_s": min(times), "times_s": times,
        "peak_memory_mb": peak_memory_mb(device), **memory,
    }
    if info.forward is not None:
        fwd = info.forward
        result.update(
            forward_steps=int(fwd.nstep), forward_status=fwd.status,
            forward_rel_residual_max=float(fwd.rel_residual.max()),
            forward_rel_residual_mean=float(fwd.rel_residual.mean()),
        )
    if info.backward is not None and info.backward.ran:
        result.update(backward_steps=int(info.backward.nstep), backward_status=info.backward.status)
        if info.backward.rel_residual is not None:
            result.update(backward_rel_residual_max=float(info.backward.rel_residual.max()),
                          backward_rel_residual_mean=float(info.backward.rel_residual.mean()))
    return result


def solver_overhead(batch: int = 612, width: int = 500, modalities: int = 3, seed: int = 0,
                    weight_scale: float = 1.0, solver: str = "anderson", iters: int = 20, repeats: int = 5,
                    device: str | torch.device = "cpu", anderson_m: int = 6) -> dict:
    """Cost of one function evaluation, one vector-Jacobian product, and one solver iteration of DEQFusion.

    ``bookkeeping_fraction`` = (time per solver iteration - time per evaluation) / time per evaluation: the share
    of the solver's own work (history, residuals, mixing) relative to evaluating the map. The solve runs with
    ``tol=0`` so that it spends exactly ``iters`` iterations. ``iters`` plain evaluations and one solve are timed
    alternately, ``repeats`` times, and the fastest of each is used, so that a slow spell of a shared machine does
    not land on one side only. For Anderson, which hands DEQFusion's map a slot of its history to write into,
    the plain evaluations also write into a preallocated buffer, so the difference is the solver's own work.
    """
    device = torch.device(device)
    torch.manual_seed(seed)
    m = DEQFusion([width] * modalities, width).to(device)
    if weight_scale != 1.0:
        scale_fusion_weights_(m, weight_scale)
    xs = make_inputs(batch, width, modalities, seed + 1, device)
    kw = dict(m=int(anderson_m), lam=1e-4) if solver == "anderson" else {}
    with torch.no_grad():
        x, x_fuse, mask = m.inject(xs, None)
        f = m.make_map(x, x_fuse, mask)
        z0 = m.initial_state(x_fuse)
        z = f(f(z0))
        out_kw = {"out": torch.empty_like(z)} if solver == "anderson" else {}

        def evals():
            for _ in range(iters):
                f(z, **out_kw)

        def run_solve():
            solve(f, z0, solver=solver, max_iter=iters, tol=0.0, **kw)

        t_f, t_solve = [], []
        for _ in range(repeats):
            t_f += time_call(evals, device, repeats=1, warmup=0 if t_f else 1)
            t_solve += time_call(run_solve, device, repeats=1, warmup=0 if t_solve else 1)
    zl = z.detach().requires_grad_()
    fz = f(zl)
    v = torch.randn_like(fz)
    t_vjp = time_call(lambda: torch.autograd.grad(fz, zl, v, retain_graph=True), device, repeats=max(5, repeats * 2))
    per_eval = min(t_f) / iters
    per_iter = min(t_solve) / iters
    return {
        "solver": solver, "anderson_m": int(anderson_m) if solver == "anderson" else None, "batch": batch,
        "width": width, "modalities": modalities, "iters": iters,
        "feval_ms": per_eval * 1e3, "vjp_ms": min(t_vjp) * 1e3, "iteration_ms": per_iter * 1e3,
        "bookkeeping_fraction": (per_iter - per_eval) / per_eval,
    }
