"""Time the solvers' own work per iteration (history, residuals, mixing), apart from the map they solve.

The map is a cheap contractive affine map ``f(z) = 0.5 z + c`` on states of the experiments' sizes, so nearly all
of each iteration's time is the solver's bookkeeping. Each solve runs ``--iters`` iterations (``tol=0``); the
fastest of ``--repeats`` solves is reported per iteration, with the cost of one evaluation of the map beside it.

    python benchmarks/solver_bookkeeping.py --out bookkeeping.json

Shapes (batch x state elements): BRCA 612 x (4 x 500), MM-IMDB 256 x (3 x 512), CM-BERT MOSI 24 x (3 x 50 x 50).
"""

from __future__ import annotations

import argparse
import platform

import torch
from _report import add_common_args, fastest, report  # benchmarks/_report.py, beside this script

from deqfusion.deq.solvers import solve

SHAPES = {"brca": (612, 4 * 500), "mmimdb": (256, 3 * 512), "mosi_maps": (24, 3 * 50 * 50)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--solvers", nargs="+", default=["anderson", "broyden", "fixed_point_iter"])
    p.add_argument("--iters", type=int, default=40)
    add_common_args(p, repeats=9)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    rows = []
    for name in args.shapes:
        bsz, n = SHAPES[name]
        c = torch.randn(bsz, n, generator=g)
        z0 = torch.zeros(bsz, n)

        def f(z, c=c):
            return 0.5 * z + c

        def evals(z0=z0, f=f):
            for _ in range(args.iters):
                f(z0)

        t_eval = fastest(evals, args.repeats) / args.iters
        for solver in args.solvers:
            t = fastest(lambda z0=z0, f=f, solver=solver: solve(f, z0, solver=solver, max_iter=args.iters, tol=0.0),
                        args.repeats)
            rows.append({"shape": name, "batch": bsz, "state": n, "solver": solver, "iters": args.iters,
                         "ms_per_iteration": t / args.iters * 1e3, "map_ms": t_eval * 1e3,
                         "bookkeeping_ms": (t / args.iters - t_eval) * 1e3})
    out = {"torch": torch.__version__, "python": platform.python_version(), "threads": args.threads,
           "results": rows}
    report(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
