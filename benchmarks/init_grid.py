"""Convergence of DEQFusion at initialisation over a random grid of the shapes a user may pass.

For each case (batch 1-1024, width 8-1024, 2-8 modalities, default or explicit GroupNorm groups, vectors or
(B, C, L) maps, with or without projections) and each initialisation (``contractive``, the default, and
``reference``, the paper's): one forward solve with the library defaults, then the spectral radius of the joint
map's Jacobian at the point found. Prints JSON (per case and a summary); --out also writes it.

    python benchmarks/init_grid.py --cases 30 --out docs/results/benchmarks/init_grid.json
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys

import torch
from _report import report  # benchmarks/_report.py, beside this script

from deqfusion import DEQFusion, spectral_radius
from deqfusion.deq import defaults as D


def cases(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        width = rng.choice([8, 12, 16, 30, 50, 64, 100, 128, 256, 500, 1024])
        batch = rng.choice([1, 2, 16, 128, 512, 1024]) if width <= 128 else rng.choice([1, 4, 32, 128])
        length = rng.choice([None, None, 3, 10])
        if length is not None:
            batch = min(batch, 32)
        divisors = [g for g in (1, 2, 4, 8) if width % g == 0 and width // g >= 4]
        out.append(dict(batch=batch, width=width, n=rng.randint(2, 8), length=length,
                        groups=rng.choice([None, rng.choice(divisors)]), proj=rng.random() < 0.5))
    return out


def run_case(case: dict, init: str, seed: int) -> dict:
    torch.manual_seed(seed)
    w = case["width"]
    dims = [w + 7 if case["proj"] and i % 2 == 0 else w for i in range(case["n"])]
    m = DEQFusion(dims, w, groups=case["groups"], init=init)
    tail = () if case["length"] is None else (case["length"],)
    xs = [torch.randn(case["batch"], d, *tail) for d in dims]
    with torch.no_grad():
        _, info = m.eval()(xs)
        x, x_fuse, mask_nb = m.inject(xs, None)
    rho = spectral_radius(m.make_map(x, x_fuse, mask_nb), info.forward.z, n_iter=30)
    return dict(init=init, nstep=info.forward.nstep, converged=info.forward.status == "converged",
                max_rel_residual=float(info.forward.rel_residual.max()), max_rho=float(rho.max()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for i, case in enumerate(cases(args.cases, args.seed)):
        for init in ("contractive", "reference"):
            rows.append(dict(case, **run_case(case, init, seed=i)))
    summary = {}
    for init in ("contractive", "reference"):
        r = [row for row in rows if row["init"] == init]
        summary[init] = dict(
            cases=len(r), converged=sum(row["converged"] for row in r),
            median_steps=statistics.median(row["nstep"] for row in r), max_steps=max(row["nstep"] for row in r),
            max_rho=max(row["max_rho"] for row in r), rho_below_1=sum(row["max_rho"] < 1 for row in r))
    report(dict(command="python benchmarks/init_grid.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                torch=torch.__version__, threads=args.threads,
                defaults=dict(f_max_iter=D.F_MAX_ITER, f_tol=D.F_TOL, f_solver=D.F_SOLVER),
                summary=summary, rows=rows), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
