"""Figures from trained runs: a run folder's selected model restored with the inputs its fusion sees on the test
split, and the residual curves of the fusion's fixed-point solve (``deqfusion plot convergence``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..benchmarking.convergence import band_summary, residual_traces, steps_to_reach
from ..errors import UserError
from ..fusion.deq_fusion import DEQFusion

SOLVER_LABELS = {"anderson": "DEQ, Anderson", "broyden": "DEQ, Broyden",
                 "fixed_point_iter": "weight-tied iteration z <- F(z)"}


def locate_run(run: str | None, checkpoint: str | None, label: str | None = None,
               seed: int | None = None) -> tuple[Path, str | None, int | None]:
    """``(run folder, variant label or None, seed or None)`` from a run folder (with a label and a seed) or a
    run's checkpoint file."""
    if checkpoint and run:
        raise UserError("give either --run (with --fusion/--seed) or --checkpoint, not both")
    if checkpoint:
        ckpt = Path(checkpoint)
        if not ckpt.is_file():
            raise UserError(f"checkpoint not found: {ckpt}")
        m = re.fullmatch(r"seed(-?\d+)", ckpt.parent.name)
        if m is None:
            raise UserError(f"{ckpt}: expected a run's <variant>/seed<k>/ checkpoint")
        return ckpt.parent.parent.parent, ckpt.parent.parent.name, int(m.group(1))
    if not run:
        raise UserError("give --run DIR (an experiment's output folder) or --checkpoint PATH")
    return Path(run), label, seed


def _read_config(run: Path) -> dict:
    path = run / "config.json"
    if not path.is_file():
        raise UserError(f"{run} holds no config.json: not an output folder of an experiment command")
    return json.loads(path.read_text())


def _pick_seed(seed, seeds) -> int:
    if seed is None:
        return int(seeds[0])
    if seed not in seeds:
        raise UserError(f"seed {seed} is not among the run's seeds {seeds}")
    return seed


def _capture_fusion_inputs(model: torch.nn.Module, call) -> list:
    """Run ``call()`` (the model on the test inputs, eval mode, no grad) and return what its fusion received."""
    seen = {}

    def hook(_mod, args, kwargs):
        seen["xs"] = args[0] if args else kwargs["inputs"]
        seen["mask"] = args[1] if len(args) > 1 else kwargs.get("mask")

    handle = model.fusion.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model.eval()
        with torch.no_grad():
            call()
    finally:
        handle.remove()
    return seen["xs"], seen["mask"]


def load_experiment_run(run: Path, label: str | None, seed: int | None, data_dir: str | None) -> dict:
    """A run folder of the experiment runner: its experiment rebuilds the selected model and test inputs."""
    import importlib

    from ..experiments.runner import get_experiment, load_run

    loaded = load_run(run)
    try:  # an experiment registers itself when its module is imported
        importlib.import_module(f"deqfusion.experiments.{loaded.experiment}")
    except ImportError:
        pass
    exp = get_experiment(loaded.experiment)
    if exp.restore is None:
        raise UserError(f"{run}: the {loaded.experiment} experiment has no model to plot")
    labels = [v["label"] for v in loaded.variants]
    if label is None:
        label = next((v["label"] for v in loaded.variants if v.get("fusion") in ("deq", "unrolled")), None)
        if label is None:
            raise UserError(f"{run}: no DEQ-type fusion among {labels}")
    if label not in labels:
        raise UserError(f"{run}: no fusion {label!r}; the run has {labels}")
    seed = _pick_seed(seed, loaded.config["seeds"])
    restored = exp.restore(loaded, label, seed, data_dir)
    xs, mask = _capture_fusion_inputs(restored["model"], restored["forward"])
    return {**restored, "xs": xs, "mask": mask, "label": label, "seed": seed}


def restore_run(run: Path, label: str | None, seed: int | None, data_dir: str | None = None) -> dict:
    """A run folder's trained model (a variant's selected weights; default the first DEQ-type fusion and the
    first seed) and the inputs its fusion receives on the test split."""
    _read_config(run)
    return load_experiment_run(run, label, seed, data_dir)


def convergence_curves(fusion: DEQFusion, loaded: dict, solvers, steps: int, band: float) -> tuple[dict, dict]:
    """Residual traces of the fusion's solve on the restored inputs: ``(curves for the figure by solver label,
    numbers for the JSON by solver name)``."""
    names = None
    if fusion.unimodal:
        names = [*loaded["names"], "fusion"] if len(loaded["names"]) == fusion.num_modalities else None
    curves, numbers = {}, {}
    for s in solvers:
        traces = residual_traces(fusion, loaded["xs"], solver=s, max_iter=steps, mask=loaded["mask"], names=names)
        summary = band_summary(traces, band)
        curves[SOLVER_LABELS[s]] = summary
        numbers[s] = {comp: {**v, "steps_to_mean": steps_to_reach(v["mean"]),
                             "final_mean": v["mean"][-1]} for comp, v in summary.items()}
    # the same floor for every curve: exact zeros (e.g. an absent modality) cannot be drawn on a log axis
    for per in curves.values():
        for c in per.values():
            for k in ("mean", "lo", "hi"):
                c[k] = [max(v, 1e-12) for v in c[k]]
    return curves, numbers
