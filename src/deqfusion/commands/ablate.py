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
import json
import logging
import os
import shlex
import time
from pathlib import Path

from ..errors import UserError
from ..experiments.fusion_spec import parse_fusion_spec
from ..training.checkpoint import atomic_write_json
from ..training.results import markdown_table, summarize, write_csv, write_json

NAME = "ablate"
HELP = "DEQ fusion ablations (purify gate, per-modality blocks, Jacobian loss, unrolling, solver, gradient)"
DESCRIPTION = __doc__

log = logging.getLogger(__name__)

#: variant -> (registered fusion, options added to the experiment's defaults for that fusion)
VARIANTS: dict[str, tuple[str, dict]] = {
    "full": ("deq", {}),
    "no-purify": ("deq", {"purify": False}),
    "fuse-only": ("deq", {"unimodal": False}),
    "no-jac": ("deq", {"jac_n_probes": 0}),
    "unrolled-k1": ("unrolled", {"unrolled_steps": 1}),
    "unrolled-k2": ("unrolled", {"unrolled_steps": 2}),
    "unrolled-k4": ("unrolled", {"unrolled_steps": 4}),
    "unrolled-k8": ("unrolled", {"unrolled_steps": 8}),
    "broyden": ("deq", {"f_solver": "broyden", "b_solver": "broyden"}),
    "implicit": ("deq", {"b_mode": "implicit", "b_max_iter": 30, "b_tol": 1e-3}),
    "phantom": ("deq", {"b_mode": "phantom", "phantom_steps": 5}),
}

DATASETS = ("rosmap", "mosi")

#: (key in the per-seed rows, column title, scale, digits) of the summary table, per dataset
TABLE = {
    "rosmap": [("acc", "ACC %", 100, 1), ("f1", "F1 %", 100, 1), ("auc", "AUC %", 100, 1)],
    "mosi": [("mae", "MAE", 1, 3), ("corr", "Corr", 1, 3), ("acc2_neg_pos", "Acc-2 %", 100, 1)],
}
TITLES = {"rosmap": "ROSMAP", "mosi": "MOSI T+A+V"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), metavar="NAME",
                   help=f"variants to run (default all): {', '.join(VARIANTS)}")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--data-dir", default=os.environ.get("DEQFUSION_DATA_DIR"),
                   help="folder holding rosmap/ and cmu-mosi-bclstm/ (default $DEQFUSION_DATA_DIR)")
    p.add_argument("--omics-args", default="", metavar="'ARGS'",
                   help="extra options for deqfusion omics, in one quoted string (e.g. '--epochs 100')")
    p.add_argument("--mosi-args", default="", metavar="'ARGS'",
                   help="extra options of deqfusion mosi-features for the MOSI runs (e.g. '--epochs 20')")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the runs found in --out")
    p.add_argument("--no-progress", dest="progress", action="store_false")


# ------------------------------------------------------------------------------------------- variants


def resolve_variants(names, base_options) -> list[dict]:
    """``[{"variant", "fusion", "options", "same_as"}]``: ``options`` = ``base_options(fusion)`` updated by the
    variant's; ``same_as`` names an earlier variant with identical fusion and options (then it is not rerun)."""
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise UserError(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    if len(set(names)) != len(names):
        raise UserError(f"--variants lists a variant twice: {names}")
    out = []
    for name in names:
        fusion, opts = VARIANTS[name]
        resolved = dict(base_options(fusion))
        resolved.update(opts)
        same = next((v["variant"] for v in out if v["fusion"] == fusion and v["options"] == resolved), None)
        out.append({"variant": name, "fusion": fusion, "options": resolved, "same_as": same})
    return out


def _sub_parser(module) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"deqfusion {module.NAME}", add_help=False, exit_on_error=False)
    module.add_arguments(p)
    return p


def _parse_sub(module, argv: list[str], what: str) -> argparse.Namespace:
    try:
        ns, rest = _sub_parser(module).parse_known_args(argv)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise UserError(f"{what}: {exc}") from None
    if rest:
        raise UserError(f"{what}: unrecognised option(s) {rest}")
    return ns


def _spec(fusion: str, options: dict) -> str:
    return fusion + (":" + ",".join(f"{k}={v}" for k, v in options.items()) if options else "")


# --------------------------------------------------------------------------------------------- ROSMAP


def plan_rosmap(args, out: Path) -> dict:
    """Check ``--omics-args`` and resolve the variants against the omics command's defaults (no training)."""
    from ..experiments import omics as omics_experiment
    from . import omics

    extra = shlex.split(args.omics_args)
    forbidden = {"--fusion", "--seeds", "--out", "--dataset", "--resume"} & set(extra)
    if forbidden:
        raise UserError(f"--omics-args must not set {sorted(forbidden)}: ablate sets them")
    probe = _parse_sub(omics, ["--out", str(out), *extra], "--omics-args")

    def base(fusion: str) -> dict:
        return omics_experiment.presets(probe.reference_settings)[fusion][1]

    return {"extra": extra, "variants": resolve_variants(args.variants, base)}


def run_rosmap(args, out: Path, plan: dict) -> list[dict]:
    """All ROSMAP variants through ``deqfusion omics`` (one call, every variant a fusion spec)."""
    from . import omics

    extra, variants = plan["extra"], plan["variants"]
    # the variant's own options only: the omics command adds its defaults back (the same as base())
    specs, label_of = [], {}
    for v in variants:
        if v["same_as"]:
            continue
        spec = _spec(v["fusion"], VARIANTS[v["variant"]][1])
        specs.append(spec)
        label_of[v["variant"]] = parse_fusion_spec(spec).label
    data_dir = str(Path(args.data_dir) / "rosmap") if args.data_dir else None
    argv = ["--dataset", "rosmap", "--out", str(out), "--seeds", *map(str, args.seeds), "--fusion", *specs, *extra]
    if data_dir and "--data-dir" not in extra:
        argv += ["--data-dir", data_dir]
    if args.threads and "--threads" not in extra:
        argv += ["--threads", str(args.threads)]
    if not args.progress:
        argv.append("--no-progress")
    ns = _parse_sub(omics, argv, "deqfusion omics")
    ns.resume = args.resume
    omics.run(ns)
    rows = []
    for v in variants:
        label = label_of[v["same_as"] or v["variant"]]
        for seed in args.seeds:
            res = json.loads((out / label / f"seed{seed}" / "result.json").read_text())
            row = {"dataset": "rosmap", "variant": v["variant"], "same_as": v["same_as"] or "", "seed": seed,
                   "fusion": v["fusion"], "options": json.dumps(v["options"], sort_keys=True),
                   **{k: res["test"][k] for k, *_ in TABLE["rosmap"]},
                   "best_epoch": res["best_epoch"], "epochs_run": res["epochs_run"],
                   "train_seconds": round(res["train_seconds"], 2)}
            if "solver_steps" in res["test"]:
                row["test_solver_steps"] = res["test"]["solver_steps"]
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------- MOSI


def plan_mosi(args, out: Path) -> dict:
    """Check ``--mosi-args`` and resolve the variants against the mosi-features defaults (no training)."""
    from . import mosi_features

    extra = shlex.split(args.mosi_args)
    forbidden = {"--fusion", "--seeds", "--out", "--subsets", "--resume", "--data-dir"} & set(extra)
    if forbidden:
        raise UserError(f"--mosi-args must not set {sorted(forbidden)}: ablate sets them")
    ms = _parse_sub(mosi_features, ["--out", str(out), *extra], "--mosi-args")
    if not args.data_dir:
        raise UserError("no data folder: pass --data-dir or set DEQFUSION_DATA_DIR")
    return {"ms": ms,
            "variants": resolve_variants(args.variants, lambda fusion: mosi_features.fusion_options(fusion, ms))}


def run_mosi(args, out: Path, plan: dict) -> list[dict]:
    """All MOSI variants through the mosi-features experiment (its model, trainer and settings, subset T+A+V),
    each variant a runner variant with its fusion options."""
    from ..experiments import mosi_features as experiment
    from ..experiments.runner import run_experiment
    from ..training.mosi_regression import parse_subset

    ms, variants = plan["ms"], plan["variants"]
    ms.data_dir, ms.fusion, ms.subsets = args.data_dir, ["deq"], ["T+A+V"]
    settings, _ = experiment.configure(ms)
    runs = [{"label": v["variant"], "subset": "T+A+V", "modalities": parse_subset("T+A+V"),
             "fusion": v["fusion"], "options": v["options"]} for v in variants if not v["same_as"]]
    res = run_experiment(experiment.MOSI_FEATURES, settings, runs, args.seeds, out, resume=args.resume,
                         progress=args.progress, threads=args.threads)
    by_run = {(r["label"], r["seed"]): r for r in res["rows"]}
    rows = []
    for v in variants:
        for seed in args.seeds:
            r = by_run[(v["same_as"] or v["variant"], seed)]
            rows.append({"dataset": "mosi", "variant": v["variant"], "same_as": v["same_as"] or "", "seed": seed,
                         "fusion": v["fusion"], "options": json.dumps(v["options"], sort_keys=True),
                         **{k: r[f"test_{k}"] for k, *_ in TABLE["mosi"]},
                         "best_epoch": r["best_epoch"], "epochs_run": r["epochs_run"],
                         "train_seconds": round(r["train_seconds"], 2)})
    return rows


# ------------------------------------------------------------------------------------------------ table


def summarize_rows(rows: list[dict]) -> dict:
    """``{dataset: {variant: {metric: {mean, std, values}}}}`` over seeds."""
    out: dict = {}
    for ds in DATASETS:
        mine = [r for r in rows if r["dataset"] == ds]
        for variant in dict.fromkeys(r["variant"] for r in mine):
            per = [r for r in mine if r["variant"] == variant]
            keys = [k for k, *_ in TABLE[ds]] + ["train_seconds", "epochs_run"]
            s = summarize(per, keys)
            s["same_as"] = per[0]["same_as"]
            s["n_seeds"] = len(per)
            out.setdefault(ds, {})[variant] = s
    return out


def summary_table(summary: dict, variants: list[str]) -> str:
    datasets = [ds for ds in DATASETS if ds in summary]
    header = ["variant"]
    for ds in datasets:
        header += [f"{TITLES[ds]} {title}" for _, title, *_ in TABLE[ds]] + [f"{TITLES[ds]} s / run"]
    table = []
    for v in variants:
        row = [v]
        for ds in datasets:
            s = summary[ds].get(v)
            if s is None:
                row += [""] * (len(TABLE[ds]) + 1)
                continue
            row += [f"{s[k]['mean'] * sc:.{d}f} +- {s[k]['std'] * sc:.{d}f}" for k, _, sc, d in TABLE[ds]]
            row.append(f"{s['train_seconds']['mean']:.0f}")
        same = {summary[ds][v]["same_as"] for ds in datasets if v in summary[ds] and summary[ds][v]["same_as"]}
        if same:
            row[0] += " (" + ", ".join(f"= {x}" for x in sorted(same)) + (
                f" on {', '.join(TITLES[ds] for ds in datasets if summary[ds].get(v, {}).get('same_as'))})"
                if len(datasets) > 1 else ")")
        table.append(row)
    return markdown_table(header, table)


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
    cfg_path = out / "config.json"
    if cfg_path.is_file() and not args.resume:
        raise UserError(f"{out} already holds an ablation; pass --resume to continue it or choose another --out")
    cfg = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("verbose", "command")}
    cfg["out"] = str(out.resolve())
    cfg["variant_definitions"] = {v: {"fusion": VARIANTS[v][0], "options": VARIANTS[v][1]} for v in args.variants}
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text())
        keys = ("omics_args", "mosi_args", "variant_definitions")
        changed = [k for k in keys if old.get(k) != json.loads(json.dumps(cfg[k]))]
        if changed:
            raise UserError(f"{out}/config.json differs from these settings in {changed}; use another --out")
    atomic_write_json(cfg_path, cfg)
    t0 = time.perf_counter()
    rows: list[dict] = []
    if "rosmap" in plans:
        rows += run_rosmap(args, out / "rosmap", plans["rosmap"])
    if "mosi" in plans:
        rows += run_mosi(args, out / "mosi", plans["mosi"])
    write_csv(out / "per_seed.csv", rows)
    summary = summarize_rows(rows)
    write_json(out / "summary.json", {"summary": summary, "seeds": args.seeds,
                                      "wall_seconds": time.perf_counter() - t0})
    flat = []
    for ds, per in summary.items():
        for v, s in per.items():
            row = {"dataset": ds, "variant": v, "same_as": s["same_as"], "n_seeds": s["n_seeds"]}
            for k, *_ in TABLE[ds]:
                row[f"{k}_mean"], row[f"{k}_std"] = s[k]["mean"], s[k]["std"]
            row["train_seconds_mean"] = s["train_seconds"]["mean"]
            flat.append(row)
    write_csv(out / "summary.csv", flat)
    title = (f"Ablations, test metrics, mean +- std over {len(args.seeds)} seed(s) {args.seeds}; ROSMAP selected "
             "on a stratified validation split of the training files, MOSI on the dev split")
    table = summary_table(summary, args.variants)
    (out / "summary.md").write_text(title + "\n\n" + table + "\n")
    print(title + "\n\n" + table)
    print(f"\n{len(rows)} row(s); results in {out}")
    return 0
