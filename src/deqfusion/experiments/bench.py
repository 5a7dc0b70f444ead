"""The grid of ``deqfusion bench``: fusion specs expanded into configurations, each timed at each shape and mode,
and the table of the results."""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..benchmarking.step import train_step_benchmark
from ..errors import DEQDivergenceError, UserError
from ..fusion.registry import available_fusions
from ..training.checkpoint import atomic_write_json
from ..training.results import markdown_table, write_csv, write_json
from .fusion_spec import check_options, parse_fusion_spec

log = logging.getLogger(__name__)

SOLVERS = ("anderson", "broyden", "fixed_point_iter")
B_MODES = ("implicit", "phantom")
MODES = ("train", "inference")


def check_grid(batches, widths, modalities: int, length: int | None, repeats: int, device: str) -> torch.device:
    """The grid's options checked (a :class:`UserError` naming the option); the device to measure on."""
    for name, values in (("batch", batches), ("width", widths)):
        if any(v < 1 for v in values):
            raise UserError(f"--{name} values must be >= 1")
    if modalities < 2:
        raise UserError("--modalities must be >= 2 (fusion needs two inputs)")
    if length is not None and length < 1:
        raise UserError("--length must be >= 1")
    if repeats < 1:
        raise UserError("--repeats must be >= 1")
    name = device
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"--device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda[:N], got {name!r}")
    return device


def expand_configs(specs, solvers, b_modes, unrolled_steps) -> list[dict]:
    """Fusion specs -> configurations ``{"label", "fusion", "options"}`` (see the module docstring)."""
    known = available_fusions()
    configs = []
    for spec in specs:
        parsed = parse_fusion_spec(spec)
        name, opts = parsed.name, parsed.options
        if name not in known:
            raise UserError(f"--fusions {spec!r}: unknown fusion {name!r}; choose from {known}")
        check_options(name, opts, f"--fusions {spec!r}")
        extra = "".join(f",{k}={v}" for k, v in opts.items() if k not in ("f_solver", "b_mode", "unrolled_steps"))
        if name == "deq":
            for solver in ([opts["f_solver"]] if "f_solver" in opts else solvers):
                for bm in ([opts["b_mode"]] if "b_mode" in opts else b_modes):
                    o = dict(opts, f_solver=solver, b_mode=bm)
                    if bm == "implicit":  # the adjoint solve uses the same solver as the forward one
                        o.setdefault("b_solver", solver)
                    configs.append({"label": f"deq {solver}/{bm}{extra}", "fusion": name, "options": o})
        elif name == "unrolled":
            for k in ([opts["unrolled_steps"]] if "unrolled_steps" in opts else unrolled_steps):
                if int(k) < 1:
                    raise UserError(f"--unrolled-steps must be >= 1, got {k}")
                configs.append({"label": f"unrolled k={k}{extra}", "fusion": name,
                                "options": dict(opts, unrolled_steps=int(k))})
        else:
            configs.append({"label": name + extra, "fusion": name, "options": dict(opts)})
    labels = [c["label"] for c in configs]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise UserError(f"the same configuration is named twice: {dup}")
    return configs


def _shape_label(batch: int, width: int, modalities: int, length: int | None) -> str:
    feat = f"{width}x{length}" if length else f"{width}"
    return f"batch {batch}, {modalities} x {feat}"


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the system has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover (not on Linux)
        return None


def run_grid(configs: list[dict], *, batches, widths, modalities: int, length: int | None, modes, repeats: int,
             seed: int, weight_scale: float, lambda_jac: float, dtype: torch.dtype, memory: bool,
             device: torch.device, progress: bool = True) -> list[dict]:
    """One row per batch x width x configuration x mode: :func:`~deqfusion.benchmarking.step.train_step_benchmark`
    timings and solver statistics, or an ``error`` entry for a configuration that failed (logged, not raised)."""
    jobs = [(b, w, c, m) for b in batches for w in widths for c in configs for m in modes]
    rows = []
    for b, w, c, mode in tqdm(jobs, desc="bench", disable=not progress, dynamic_ncols=True):
        shape = _shape_label(b, w, modalities, length)
        row = {"shape": shape, "label": c["label"], "mode": mode, "batch": b, "width": w,
               "modalities": modalities, "length": length, "fusion": c["fusion"]}
        try:
            r = train_step_benchmark(
                c["fusion"], batch=b, width=w, modalities=modalities, repeats=repeats, seed=seed,
                weight_scale=weight_scale, lambda_jac=lambda_jac, device=device, dtype=dtype,
                length=length, inference=mode == "inference", measure_memory=memory, **c["options"],
            )
        except (ValueError, TypeError, RuntimeError, DEQDivergenceError) as exc:
            if isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower() and device.type == "cuda":
                torch.cuda.empty_cache()
            log.warning("%s, %s, %s: failed: %s", shape, c["label"], mode, exc)
            row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            continue
        r.pop("fusion", None)
        r.pop("mode", None)
        row.update(r)
        rows.append(row)
    return rows


def summary_table(rows: list[dict]) -> str:
    """The markdown table of :func:`run_grid`'s rows."""
    header = ["shape", "configuration", "mode", "median ms", "fwd steps", "fwd rel res (max)", "bwd steps",
              "bwd rel res (max)", "peak tensor MiB"]

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    table = []
    for r in rows:
        if r.get("error"):
            table.append([r["shape"], r["label"], r["mode"], "failed: " + r["error"][:60], "", "", "", "", ""])
            continue
        table.append([
            r["shape"], r["label"], r["mode"], fmt(r["median_s"] * 1e3, ".1f"), fmt(r.get("forward_steps"), "d"),
            fmt(r.get("forward_rel_residual_max"), ".1e"), fmt(r.get("backward_steps"), "d"),
            fmt(r.get("backward_rel_residual_max"), ".1e"), fmt(r.get("tensor_peak_mb"), ".1f"),
        ])
    return markdown_table(header, table)




def run_and_write(out: Path, cfg: dict, configs: list[dict], device: torch.device, plot: bool, **grid) -> list[dict]:
    """:func:`run_grid` with the run's files: ``config.json`` (``cfg`` plus the environment and the load average
    before and after), ``results.json``, ``results.csv``, ``summary.md`` and, with ``plot``, ``bench.png``."""
    cfg["environment"] = {
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
        "processor": platform.processor(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "load_average_before": load_average(),
    }
    atomic_write_json(out / "config.json", cfg)
    rows = run_grid(configs, device=device, **grid)
    cfg["environment"]["load_average_after"] = load_average()
    atomic_write_json(out / "config.json", cfg)
    write_json(out / "results.json", {"environment": cfg["environment"], "results": rows})
    write_csv(out / "results.csv", [{k: v for k, v in r.items() if k not in ("times_s", "options")} for r in rows])
    (out / "summary.md").write_text(summary_table(rows) + "\n")
    if plot and any(not r.get("error") for r in rows):
        from ..benchmarking.figures import bench_figure

        bench_figure(rows, out / "bench.png")
    return rows
