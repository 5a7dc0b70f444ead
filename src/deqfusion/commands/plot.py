"""``deqfusion plot convergence``: how a trained DEQ fusion reaches its fixed point on test data.

Loads a trained model from an experiment's output folder (``deqfusion omics``, ``mosi-features``, ...:
``--run DIR`` with ``--fusion LABEL`` and ``--seed K``, or ``--checkpoint`` pointing at a run's
``checkpoint.pt`` / ``best.pt``), rebuilds the run's test inputs exactly as training saw them (same split,
scaling and selected weights), and feeds them through the model up to the fusion. Then it solves the fusion's
fixed point with each ``--solvers`` entry from zeros (default: the model's own solver and ``fixed_point_iter``,
the weight-tied iteration ``z <- F(z)`` that the unrolled fusion runs) for ``--steps`` steps with no early
stop, recording every test sample's relative residual ``||F(z)_c - z_c|| / ||F(z)_c||`` per component ``c``
(each modality block, the fusion block, and the whole state).

Writes the figure (mean over test samples and a central band, 95 % by default) to ``--out`` as PNG and PDF
(same stem), and the numbers (per step: mean, median and band per solver and component, and the first step
at which the mean reaches 1e-2 / 1e-3 / 1e-4) to ``<stem>.json``. Needs matplotlib (``deqfusion[plot]``).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

import torch

from ..benchmarking.convergence import JOINT, band_summary, residual_traces, steps_to_reach
from ..errors import UserError
from ..fusion.deq_fusion import DEQFusion
from ..training.results import write_json

NAME = "plot"
HELP = "figures from trained models (convergence of the fusion's fixed-point solve)"
DESCRIPTION = __doc__

log = logging.getLogger(__name__)

SOLVERS = ("anderson", "broyden", "fixed_point_iter")
SOLVER_LABELS = {"anderson": "DEQ, Anderson", "broyden": "DEQ, Broyden",
                 "fixed_point_iter": "weight-tied iteration z <- F(z)"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="figure", metavar="FIGURE", required=True)
    c = sub.add_parser("convergence", help="relative residual vs solver step, per component, on test data",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = c.add_argument_group("model")
    src.add_argument("--run", default=None, metavar="DIR",
                     help="output folder of an experiment command (omics, mosi-features, ...)")
    src.add_argument("--fusion", default=None, metavar="LABEL",
                     help="which fusion of the run (its folder name; default: the first DEQ-type fusion)")
    src.add_argument("--seed", type=int, default=None, help="which seed of the run (default: the first)")
    src.add_argument("--checkpoint", default=None, metavar="PATH",
                     help="a run's checkpoint.pt (omics) or best.pt (mosi-features) instead of --run/--fusion/--seed")
    src.add_argument("--data-dir", default=None,
                     help="data folder (default: the one the run recorded, then $DEQFUSION_DATA_DIR)")
    c.add_argument("--solvers", nargs="+", default=None, choices=SOLVERS,
                   help="solvers to compare (default: the model's forward solver and fixed_point_iter)")
    c.add_argument("--steps", type=int, default=60, help="solver steps, no early stop (default 60)")
    c.add_argument("--band", type=float, default=0.95, help="central band over samples (default 0.95)")
    c.add_argument("--out", required=True, help="figure path (.png; a .pdf and a .json are written beside it)")


# ------------------------------------------------------------------------------------------- loading runs


def _locate(args) -> tuple[Path, str | None, int | None]:
    """``(run folder, fusion label or None, seed or None)`` from ``--run``/``--fusion``/``--seed`` or
    ``--checkpoint``."""
    if args.checkpoint and args.run:
        raise UserError("give either --run (with --fusion/--seed) or --checkpoint, not both")
    if args.checkpoint:
        ckpt = Path(args.checkpoint)
        if not ckpt.is_file():
            raise UserError(f"checkpoint not found: {ckpt}")
        m = re.fullmatch(r"seed(-?\d+)", ckpt.parent.name)
        if m is None:
            raise UserError(f"{ckpt}: expected a run's <variant>/seed<k>/ checkpoint")
        return ckpt.parent.parent.parent, ckpt.parent.parent.name, int(m.group(1))
    if not args.run:
        raise UserError("give --run DIR (an experiment's output folder) or --checkpoint PATH")
    return Path(args.run), args.fusion, args.seed


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


def load_run(args) -> dict:
    run, label, seed = _locate(args)
    cfg = _read_config(run)
    if "experiment" in cfg:
        return load_experiment_run(run, label, seed, args.data_dir)
    raise UserError(f"{run}/config.json is not the output folder of an experiment command (omics, missing, "
                    "mosi-features, ...)")


# ------------------------------------------------------------------------------------------------- figure


def convergence(args) -> int:
    from ..benchmarking.figures import convergence_figure, import_pyplot

    import_pyplot()  # a missing matplotlib fails before any work
    if args.steps < 1:
        raise UserError("--steps must be >= 1")
    if not 0 < args.band < 1:
        raise UserError("--band must lie in (0, 1)")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out should name a .png file (a .pdf is written beside it), got {out}")
    loaded = load_run(args)
    fusion = loaded["model"].fusion
    if not isinstance(fusion, DEQFusion):
        raise UserError(f"fusion {loaded['label']!r} is {type(fusion).__name__}: it has no fixed point to plot")
    solvers = args.solvers or list(dict.fromkeys([fusion.solver_config["f_solver"], "fixed_point_iter"]))
    names = None
    if fusion.unimodal:
        names = [*loaded["names"], "fusion"] if len(loaded["names"]) == fusion.num_modalities else None
    curves, numbers = {}, {}
    for s in solvers:
        traces = residual_traces(fusion, loaded["xs"], solver=s, max_iter=args.steps, mask=loaded["mask"],
                                 names=names)
        summary = band_summary(traces, args.band)
        method = SOLVER_LABELS[s]
        curves[method] = summary
        numbers[s] = {comp: {**v, "steps_to_mean": steps_to_reach(v["mean"]),
                             "final_mean": v["mean"][-1]} for comp, v in summary.items()}
    # the same floor for every curve: exact zeros (e.g. an absent modality) cannot be drawn on a log axis
    for per in curves.values():
        for c in per.values():
            for k in ("mean", "lo", "hi"):
                c[k] = [max(v, 1e-12) for v in c[k]]
    title = f"{loaded['title']}; mean and {args.band:.0%} band over samples"
    paths = convergence_figure(curves, [out, out.with_suffix(".pdf")], title=title)
    write_json(out.with_suffix(".json"), {
        "checkpoint": loaded["checkpoint"], "fusion": loaded["label"], "seed": loaded["seed"],
        "n_samples": loaded["n_samples"], "steps": args.steps, "band": args.band, "solvers": solvers,
        "components": [c for c in next(iter(curves.values())) if c != JOINT] + [JOINT], "curves": numbers,
    })
    for s in solvers:
        reach = numbers[s][JOINT]["steps_to_mean"]
        print(f"{SOLVER_LABELS[s]}: mean relative residual of the joint state after {args.steps} steps "
              f"{numbers[s][JOINT]['final_mean']:.2e}; first step at or below " +
              ", ".join(f"{k}: {v if v is not None else 'never'}" for k, v in reach.items()))
    print("wrote " + ", ".join(str(p) for p in [*paths, out.with_suffix(".json")]))
    return 0


def run(args) -> int:
    if args.figure == "convergence":
        return convergence(args)
    raise UserError(f"unknown figure {args.figure!r}")  # pragma: no cover (argparse restricts the choices)
