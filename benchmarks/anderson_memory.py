"""Anderson's memory ``m``: iterations, residual reached and solver bookkeeping of DEQFusion at the BRCA shapes.

For each memory and each state of the weights ((a) the default initialisation, (b) every fusion weight matrix
x 0.5, as in ``train_step.py``): the forward solve with the package defaults (105 iterations, relative tolerance
1e-4) gives the iterations it needs and the relative residual it reaches; ``solver_overhead`` times a 20-iteration
solve against 20 plain evaluations, alternately, and reports the bookkeeping fraction (solver time per iteration
minus one evaluation, over one evaluation). ``--rounds`` repeats the timing over all memories, so that the
machine's drift spreads over all of them; the JSON keeps every round.

    python benchmarks/anderson_memory.py --memories 2 3 4 6 8 --rounds 3 --out memory.json
"""

from __future__ import annotations

import argparse
import statistics

import torch
from _report import add_common_args, report  # benchmarks/_report.py, beside this script

from deqfusion import DEQFusion
from deqfusion.benchmarking.step import make_inputs, scale_fusion_weights_, solver_overhead
from deqfusion.deq.solvers import anderson

STATES = {"default": 1.0, "contractive": 0.5}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=612)
    p.add_argument("--width", type=int, default=500)
    p.add_argument("--modalities", type=int, default=3)
    p.add_argument("--memories", type=int, nargs="+", default=[2, 3, 4, 6, 8])
    p.add_argument("--states", nargs="+", default=list(STATES), choices=list(STATES))
    p.add_argument("--rounds", type=int, default=3)
    add_common_args(p, repeats=5)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    shape = dict(batch=args.batch, width=args.width, modalities=args.modalities)
    rows = []
    for state in args.states:
        torch.manual_seed(0)
        module = DEQFusion([args.width] * args.modalities, args.width)
        if STATES[state] != 1.0:
            scale_fusion_weights_(module, STATES[state])
        xs = make_inputs(args.batch, args.width, args.modalities, 1)
        with torch.no_grad():
            x, x_fuse, mask = module.inject(xs, None)
            f = module.make_map(x, x_fuse, mask)
            z0 = module.initial_state(x_fuse)
            for m in args.memories:
                res = anderson(f, z0, max_iter=105, tol=1e-4, m=m, lam=1e-4)
                rows.append({"state": state, "m": m, "forward_steps": int(res.nstep), "status": res.status,
                             "rel_residual_max": float(res.rel_residual.max()),
                             "rel_residual_mean": float(res.rel_residual.mean()), "bookkeeping_fraction": [],
                             "feval_ms": [], "iteration_ms": []})
    for _ in range(args.rounds):
        for row in rows:
            o = solver_overhead(**shape, weight_scale=STATES[row["state"]], repeats=args.repeats,
                                anderson_m=row["m"])
            row["bookkeeping_fraction"].append(o["bookkeeping_fraction"])
            row["feval_ms"].append(o["feval_ms"])
            row["iteration_ms"].append(o["iteration_ms"])
    for row in rows:
        row["bookkeeping_fraction_median"] = statistics.median(row["bookkeeping_fraction"])
    report({"torch": torch.__version__, "threads": args.threads, **shape, "results": rows}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
