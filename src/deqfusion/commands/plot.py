"""``deqfusion plot convergence``: how a trained DEQ fusion reaches its fixed point on test data.

Loads a trained model from an experiment's output folder (``deqfusion omics``, ``mosi-features``, ...:
``--run DIR`` with ``--fusion LABEL`` and ``--seed K``, or ``--checkpoint`` pointing at a run's
``checkpoint.pt``), rebuilds the run's test inputs exactly as training saw them (same split,
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
from pathlib import Path

from ..benchmarking.convergence import JOINT
from ..errors import UserError
from ..experiments.figures import SOLVER_LABELS, convergence_curves, locate_run, restore_run
from ..fusion.deq_fusion import DEQFusion
from ..training.results import write_json

NAME = "plot"
HELP = "figures from trained models (convergence of the fusion's fixed-point solve)"
DESCRIPTION = __doc__


SOLVERS = ("anderson", "broyden", "fixed_point_iter")


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
                     help="a run's checkpoint.pt instead of --run/--fusion/--seed")
    src.add_argument("--data-dir", default=None,
                     help="data folder (default: the one the run recorded, then $DEQFUSION_DATA_DIR)")
    c.add_argument("--solvers", nargs="+", default=None, choices=SOLVERS,
                   help="solvers to compare (default: the model's forward solver and fixed_point_iter)")
    c.add_argument("--steps", type=int, default=60, help="solver steps, no early stop (default 60)")
    c.add_argument("--band", type=float, default=0.95, help="central band over samples (default 0.95)")
    c.add_argument("--out", required=True, help="figure path (.png; a .pdf and a .json are written beside it)")


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
    run_dir, label, seed = locate_run(args.run, args.checkpoint, args.fusion, args.seed)
    loaded = restore_run(run_dir, label, seed, args.data_dir)
    fusion = loaded["model"].fusion
    if not isinstance(fusion, DEQFusion):
        raise UserError(f"fusion {loaded['label']!r} is {type(fusion).__name__}: it has no fixed point to plot")
    solvers = args.solvers or list(dict.fromkeys([fusion.solver_config["f_solver"], "fixed_point_iter"]))
    curves, numbers = convergence_curves(fusion, loaded, solvers, args.steps, args.band)
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
