"""How the DEQ solves of training runs evolve over training: forward iterations (and residuals, where logged) per
fifth of each run, from the per-epoch logs the experiment commands write.

Reads the run folders of the experiment commands (``<variant>/seed<k>/history.csv``, column ``train_solver_steps``:
the forward iterations of the logged training epoch (full batch) or their mean over the epoch's steps (mini-batch),
and ``train_solver_rel_residual`` where logged; older folders: ``solver_steps``, or mosi-features'
``runs/<run>/seed<k>/result.json`` with ``history`` rows of ``train_f_nstep`` and ``train_f_rel_residual``). For each
folder: the median over seeds of the per-fifth median iterations, the share of logged epochs whose solve used
the whole budget (per-solve logs only) and the largest logged residual (epoch means) per fifth. Prints JSON;
--out also writes it; --table prints the markdown table of such a file.

    python benchmarks/solver_over_training.py --label "ROSMAP, MM-Dynamics + DEQ" RUNS/rosmap-deq \\
        --label "MOSI features, DEQ" RUNS/mosi-deq --out docs/results/benchmarks/solver_over_training.json
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

from _report import report  # benchmarks/_report.py, beside this script

FIFTHS = 5


#: the per-epoch columns of the training solve in a run's history.csv (the trainer's names, then older ones)
STEP_COLUMNS = ("train_solver_steps", "solver_steps")
RESIDUAL_COLUMNS = ("train_solver_rel_residual",)


def _column(row: dict, names: tuple[str, ...]) -> float | None:
    return next((float(row[n]) for n in names if row.get(n) not in (None, "")), None)


def _runs(folder: Path) -> list[list[dict]]:
    """Per seed, the logged epochs as dicts with ``steps`` and (if logged) ``residual``."""
    runs = []
    for hist in sorted(folder.glob("*/seed*/history.csv")):
        with hist.open() as f:
            rows = [r for r in csv.DictReader(f) if _column(r, STEP_COLUMNS) is not None]
        runs.append([{"epoch": int(r["epoch"]), "steps": _column(r, STEP_COLUMNS),
                      **({"residual": _column(r, RESIDUAL_COLUMNS)} if _column(r, RESIDUAL_COLUMNS) is not None
                         else {})} for r in rows])
    for res in sorted(folder.glob("runs/*/seed*/result.json")):  # the older mosi-features layout
        rows = json.loads(res.read_text()).get("history") or []
        runs.append([{"epoch": int(r["epoch"]), "steps": float(r["train_f_nstep"]),
                      "residual": float(r["train_f_rel_residual"])} for r in rows if "train_f_nstep" in r])
    runs = [r for r in runs if r]
    if not runs:
        raise SystemExit(f"{folder}: no history.csv with {' or '.join(STEP_COLUMNS)} and no result.json with "
                         "train_f_nstep found")
    short = min(len(r) for r in runs)
    if short < FIFTHS:
        raise SystemExit(f"{folder}: a run with {short} logged epoch(s); the summary per fifth of training needs at "
                         f"least {FIFTHS}")
    return runs


def _fifths(rows: list[dict]) -> list[list[dict]]:
    n = len(rows)
    return [rows[i * n // FIFTHS:(i + 1) * n // FIFTHS] for i in range(FIFTHS)]


def summarise(folder: Path, label: str, budget: int) -> dict:
    runs = _runs(folder)
    per_run = [_fifths(r) for r in runs]
    steps = [statistics.median(statistics.median(e["steps"] for e in run[i]) for run in per_run if run[i])
             for i in range(FIFTHS)]
    # an epoch mean at the budget says little about single solves: the share is given for per-solve logs only
    per_solve = not any("residual" in e for run in runs for e in run)
    at_budget = [sum(e["steps"] >= budget for run in per_run for e in run[i])
                 / max(1, sum(len(run[i]) for run in per_run)) if per_solve else None for i in range(FIFTHS)]
    res = [max((e["residual"] for run in per_run for e in run[i] if "residual" in e), default=None)
           for i in range(FIFTHS)]
    return {"label": label, "folder": str(folder), "seeds": len(runs),
            "epochs_logged": [len(r) for r in runs], "median_forward_steps": steps, "share_at_budget": at_budget,
            "max_rel_residual": res}


def markdown_table(result: dict) -> str:
    head = ("| runs | seeds | forward iterations per fifth of training (median) | logged epochs at the budget, "
            "per fifth | largest residual, per fifth |")
    lines = [head, "|---|---|---|---|---|"]
    for r in result["runs"]:
        steps = ", ".join(f"{v:.1f}" for v in r["median_forward_steps"])
        share = ", ".join("-" if v is None else f"{100 * v:.0f} %" for v in r["share_at_budget"])
        res = ", ".join("-" if v is None else f"{v:.1e}" for v in r["max_rel_residual"])
        lines.append(f"| {r['label']} | {r['seeds']} | {steps} | {share} | {res} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--label", action="append", nargs=2, metavar=("LABEL", "FOLDER"), default=[],
                   help="a run folder and its label (repeat)")
    p.add_argument("--budget", type=int, default=30, help="the forward iteration budget of the runs")
    p.add_argument("--out", default=None)
    p.add_argument("--table", metavar="JSON", default=None, help="print the markdown table of a result file")
    args = p.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return 0
    if not args.label:
        p.error("give at least one --label LABEL FOLDER")
    argv_s = " ".join(argv if argv is not None else sys.argv[1:])
    runs = [summarise(Path(folder), label, args.budget) for label, folder in args.label]
    report({"command": f"python benchmarks/solver_over_training.py {argv_s}", "budget": args.budget, "runs": runs},
           args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
