"""``deqfusion ablate``: the DEQ fusion ablations on ROSMAP and on the tri-modal CMU-MOSI features.

Variants (options on top of each experiment's DEQ defaults; see ``--list``):

- ``full``: DEQ fusion as the experiment command trains it (Anderson forward solve; ROSMAP: phantom gradient,
  5 steps; MOSI: exact implicit gradient);
- ``no-purify``: the fusion block sums the modality states instead of gating them by the fused state;
- ``fuse-only``: no per-modality blocks, only the fused state is solved for;
- ``no-jac``: no Jacobian regularisation (no Hutchinson probes, so ``lambda_jac`` multiplies zero);
- ``unrolled-k1/2/4/8``: the weight-tied fusion applied k times from zeros, plain backprop, no Jacobian loss;
- ``broyden``: Broyden instead of Anderson (forward, and backward when implicit);
- ``implicit`` / ``phantom``: exact implicit gradient (adjoint solve, 30 steps, tol 1e-3) / phantom gradient (5
  steps from the fixed point).

A variant whose resolved options equal another's (e.g. ``phantom`` is ``full`` on ROSMAP) is trained once and
reported under both names, marked ``(= full)``.

ROSMAP runs through ``deqfusion omics`` itself (its defaults, its validation split and selection; the variants
as fusion specs) into ``<out>/rosmap``; extra omics options go in ``--omics-args``. MOSI uses the
``mosi-features`` model, trainer and settings (its defaults, overridable with ``--mosi-args``), subset T+A+V,
with the variant's fusion options, into ``<out>/mosi``. Every run is seeded; ``--resume`` continues.

Writes ``config.json``, ``per_seed.csv`` (one row per dataset, variant and seed), ``summary.json``,
``summary.csv`` and ``summary.md`` (one table: mean +- std over seeds of the test metrics of both datasets).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import time
from pathlib import Path

from ..cli import parse_command_options
from ..errors import UserError
from ..experiments import ablation
from ..experiments.ablation import DATASETS, VARIANTS, resolve_variants, write_results
from ..experiments.runner import add_run_arguments

NAME = "ablate"
HELP = "DEQ fusion ablations (purify gate, per-modality blocks, Jacobian loss, unrolling, solver, gradient)"
DESCRIPTION = __doc__

log = logging.getLogger(__name__)

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), metavar="NAME",
                   help=f"variants to run (default all): {', '.join(VARIANTS)}")
    p.add_argument("--data-dir", default=os.environ.get("DEQFUSION_DATA_DIR"),
                   help="folder holding rosmap/ and cmu-mosi-bclstm/ (default $DEQFUSION_DATA_DIR)")
    p.add_argument("--omics-args", default="", metavar="'ARGS'",
                   help="extra options for deqfusion omics, in one quoted string (e.g. '--epochs 100')")
    p.add_argument("--mosi-args", default="", metavar="'ARGS'",
                   help="extra options of deqfusion mosi-features for the MOSI runs (e.g. '--epochs 20')")
    add_run_arguments(p)


# --------------------------------------------------------------------------------------------- ROSMAP


def plan_rosmap(args, out: Path) -> dict:
    """Check ``--omics-args`` and resolve the variants against the omics command's defaults (no training)."""
    from . import omics

    extra = shlex.split(args.omics_args)
    forbidden = {"--fusion", "--seeds", "--out", "--dataset", "--resume"} & set(extra)
    if forbidden:
        raise UserError(f"--omics-args must not set {sorted(forbidden)}: ablate sets them")
    probe = parse_command_options(omics, ["--out", str(out), *extra], "--omics-args")
    return {"extra": extra, "variants": ablation.rosmap_variants(args.variants, probe.reference_settings)}


def run_rosmap(args, out: Path, plan: dict) -> list[dict]:
    """All ROSMAP variants through the omics experiment (every variant a fusion spec)."""
    from . import omics

    extra = plan["extra"]
    specs, label_of = ablation.rosmap_specs(plan["variants"])
    argv = ["--dataset", "rosmap", "--out", str(out), "--seeds", *map(str, args.seeds), "--fusion", *specs, *extra]
    if args.data_dir and "--data-dir" not in extra:
        argv += ["--data-dir", str(Path(args.data_dir) / "rosmap")]
    if args.threads and "--threads" not in extra:
        argv += ["--threads", str(args.threads)]
    if not args.progress:
        argv.append("--no-progress")
    return ablation.run_rosmap(parse_command_options(omics, argv, "deqfusion omics"), plan["variants"], label_of, out,
                               args.resume)


# ----------------------------------------------------------------------------------------------- MOSI


def plan_mosi(args, out: Path) -> dict:
    """Check ``--mosi-args`` and resolve the variants against the mosi-features defaults (no training)."""
    from . import mosi_features

    extra = shlex.split(args.mosi_args)
    forbidden = {"--fusion", "--seeds", "--out", "--subsets", "--resume", "--data-dir"} & set(extra)
    if forbidden:
        raise UserError(f"--mosi-args must not set {sorted(forbidden)}: ablate sets them")
    ms = parse_command_options(mosi_features, ["--out", str(out), *extra], "--mosi-args")
    if not args.data_dir:
        raise UserError("no data folder: pass --data-dir or set DEQFUSION_DATA_DIR")
    return {"ms": ms,
            "variants": resolve_variants(args.variants, lambda fusion: mosi_features.fusion_options(fusion, ms))}


def run_mosi(args, out: Path, plan: dict) -> list[dict]:
    plan["ms"].data_dir = args.data_dir
    return ablation.run_mosi(plan["ms"], plan["variants"], args.seeds, out, args.resume, args.progress, args.threads)


# ------------------------------------------------------------------------------------------------ table


def run(args) -> int:
    if not args.seeds or len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds must be distinct, got {args.seeds}")
    out = Path(args.out)
    # every option is checked before any training starts
    plans = {}
    if "rosmap" in args.datasets:
        plans["rosmap"] = plan_rosmap(args, out / "rosmap")
    if "mosi" in args.datasets:
        plans["mosi"] = plan_mosi(args, out / "mosi")
    cfg = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("verbose", "command")}
    ablation.write_config(out, cfg, args.variants, args.resume)
    t0 = time.perf_counter()
    rows: list[dict] = []
    if "rosmap" in plans:
        rows += run_rosmap(args, out / "rosmap", plans["rosmap"])
    if "mosi" in plans:
        rows += run_mosi(args, out / "mosi", plans["mosi"])
    print(write_results(out, rows, args.seeds, args.variants, time.perf_counter() - t0))
    print(f"\n{len(rows)} row(s); results in {out}")
    return 0
