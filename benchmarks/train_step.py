"""Time one DEQFusion training step (forward solve + backward + Jacobian loss) at the BRCA shapes.

Batch 612, width 500, 3 modalities, 2 CPU threads, seeded initialisation; two states of the weights:
(a) the default initialisation, (b) every weight matrix of the fusion multiplied by 0.5 (a converging state).
For each state: exact implicit gradient and phantom gradient with the package defaults, and the reference's
behaviour (no early stop: the full 105 forward / 106 backward budget). Prints JSON; --out also writes it.

    python benchmarks/train_step.py --out results/train_step.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import torch
from _report import add_common_args, report  # benchmarks/_report.py, beside this script

from deqfusion.benchmarking.step import solver_overhead, train_step_benchmark


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=612)
    p.add_argument("--width", type=int, default=500)
    p.add_argument("--modalities", type=int, default=3)
    add_common_args(p, repeats=5)
    p.add_argument("--states", nargs="+", default=["default", "contractive"], choices=["default", "contractive"])
    p.add_argument("--configs", nargs="+", default=["implicit", "phantom", "full-budget"],
                   choices=["implicit", "phantom", "full-budget"])
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    configs = {
        "implicit": dict(b_mode="implicit"),
        "phantom": dict(b_mode="phantom"),
        # tolerance 0: every solve spends its whole budget, as the reference's absolute batch-wide stop does
        "full-budget": dict(b_mode="implicit", f_tol=0.0, b_tol=0.0),
    }
    shape = dict(batch=args.batch, width=args.width, modalities=args.modalities)
    rows = []
    for state in args.states:
        scale = 1.0 if state == "default" else 0.5
        overhead = solver_overhead(**shape, weight_scale=scale, device=args.device)
        overhead["state"] = state
        rows.append({"kind": "overhead", **overhead})
        print(json.dumps(rows[-1]), file=sys.stderr)
        for name in args.configs:
            r = train_step_benchmark("deq", **shape, repeats=args.repeats, weight_scale=scale, device=args.device,
                                     **configs[name])
            r.update(kind="train_step", state=state, config=name)
            r.pop("times_s")
            rows.append(r)
            print(json.dumps(r), file=sys.stderr)
    out = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
           "results": rows}
    report(out, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
