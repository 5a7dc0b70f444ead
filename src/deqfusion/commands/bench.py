"""``deqfusion bench``: wall-clock time, solver steps, residuals and peak memory of one training step and one
inference step of DEQ fusion against the weight-tied unrolled fusion and concatenation, on random features.

Every fusion spec (``NAME`` or ``NAME:key=value,...``, as in the experiment commands) is expanded: ``deq`` over
``--solvers`` x ``--b-modes`` (unless the spec fixes ``f_solver`` / ``b_mode``), ``unrolled`` over
``--unrolled-steps`` (unless it fixes ``unrolled_steps``); other fusions run as given. Each configuration runs
for every ``--batch`` x ``--width`` and each ``--modes`` entry: ``--repeats`` timed steps after one warm-up
step, then (unless ``--no-memory``) one untimed step under the memory tracker
(:mod:`deqfusion.benchmarking.memory`). The module and inputs are seeded and identical across configurations;
``--weight-scale`` multiplies the fusion's weight matrices (0.5 gives a contractive, quickly converging map).

The training step is the cross-entropy of a fixed random linear head on the fused features (random labels) plus
``lambda_jac * jac_loss``, backpropagated to the fusion's parameters. The
DEQ's solver budgets and tolerances are the module's defaults (105 / 106 steps, relative residual 1e-4) unless
a spec sets them (``deq:f_max_iter=30,f_tol=1e-3``).

Writes into ``--out``: ``config.json`` (resolved settings, environment, machine load before and after),
``results.json`` and ``results.csv`` (one row per shape x configuration x mode), ``summary.md`` (the table,
also printed) and ``bench.png`` (time and memory bars; needs matplotlib, skip with ``--no-plot``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..errors import UserError
from ..experiments.bench import B_MODES, MODES, SOLVERS, check_grid, expand_configs, run_and_write, summary_table

NAME = "bench"
HELP = "time and memory of DEQ fusion (solvers, backward modes) vs unrolled and concat fusion"
DESCRIPTION = __doc__



def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("shapes")
    g.add_argument("--batch", type=int, nargs="+", default=[612], help="batch size(s) (default 612)")
    g.add_argument("--width", type=int, nargs="+", default=[500], help="feature width(s) d (default 500)")
    g.add_argument("--modalities", type=int, default=3, help="number of modalities (default 3)")
    g.add_argument("--length", type=int, default=None,
                   help="sequence length L: inputs (B, d, L) instead of (B, d) (the CM-BERT maps: d = L = 50)")
    g = p.add_argument_group("configurations")
    g.add_argument("--fusions", nargs="+", default=["deq", "unrolled", "concat"], metavar="SPEC",
                   help="fusion specs NAME[:key=value,...] (default: deq unrolled concat)")
    g.add_argument("--solvers", nargs="+", default=["anderson", "broyden"], choices=SOLVERS,
                   help="forward solvers for deq (default anderson broyden)")
    g.add_argument("--b-modes", nargs="+", default=list(B_MODES), choices=B_MODES,
                   help="backward modes for deq (default implicit phantom)")
    g.add_argument("--unrolled-steps", type=int, nargs="+", default=[1, 4, 16],
                   help="steps k of the unrolled fusion (default 1 4 16)")
    g.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES,
                   help="what to time: train (forward + backward) and/or inference (forward, no grad)")
    g.add_argument("--weight-scale", type=float, default=1.0,
                   help="multiply the fusion's weight matrices by this (default 1: the initialisation)")
    g.add_argument("--lambda-jac", type=float, default=1.0, help="weight of the Jacobian loss in the train step")
    g = p.add_argument_group("measurement")
    g.add_argument("--repeats", type=int, default=5, help="timed steps per configuration (median reported)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    g.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16", "float16"])
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory step")
    g.add_argument("--no-plot", dest="plot", action="store_false", help="do not draw bench.png")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--out", required=True, help="output folder (must not hold a previous bench run)")


def run(args) -> int:
    device = check_grid(args.batch, args.width, args.modalities, args.length, args.repeats, args.device)
    configs = expand_configs(args.fusions, args.solvers, args.b_modes, args.unrolled_steps)
    out = Path(args.out)
    if (out / "results.json").is_file():
        raise UserError(f"{out} already holds a bench run; choose another --out")
    if args.plot:
        from ..benchmarking.figures import import_pyplot

        import_pyplot()  # fail now, not after the measurements, when matplotlib is missing
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("verbose", "command")}
    cfg["out"] = str(out.resolve())
    cfg["configurations"] = configs
    rows = run_and_write(out, cfg, configs, device, plot=args.plot, batches=args.batch, widths=args.width,
                         modalities=args.modalities, length=args.length, modes=args.modes, repeats=args.repeats,
                         seed=args.seed, weight_scale=args.weight_scale, lambda_jac=args.lambda_jac,
                         dtype=getattr(torch, args.dtype), memory=args.memory, progress=args.progress)
    print(summary_table(rows))
    n_bad = sum(1 for r in rows if r.get("error"))
    load = cfg["environment"]
    print(f"\n{len(rows)} measurement(s), {n_bad} failed; load average {load['load_average_before']} -> "
          f"{load['load_average_after']}; results in {out}")
    return 1 if n_bad == len(rows) else 0
