"""Where a phantom-gradient training step of DEQFusion spends its time, at the BRCA shapes in the converging state.

Times, each the fastest of ``--repeats``: the forward solve alone (no graph); one differentiable evaluation of
the map at the fixed point plus its backward; the same plus the Hutchinson Jacobian loss with 1 and with 2
probes; and the whole module step (forward solve, phantom step, Jacobian loss, backward). Batch 612, width 500,
3 modalities, every fusion weight matrix x 0.5 (as in ``train_step.py``'s state (b)).

    python benchmarks/phantom_step_breakdown.py --out breakdown.json
"""

from __future__ import annotations

import argparse

import torch
from _report import add_common_args, fastest, report  # benchmarks/_report.py, beside this script

from deqfusion import DEQFusion
from deqfusion.benchmarking.step import make_inputs, scale_fusion_weights_
from deqfusion.deq.jacobian import jac_frobenius_sq
from deqfusion.deq.solvers import solve


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=612)
    p.add_argument("--width", type=int, default=500)
    p.add_argument("--modalities", type=int, default=3)
    add_common_args(p, repeats=5)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    m = DEQFusion([args.width] * args.modalities, args.width, b_mode="phantom")
    scale_fusion_weights_(m, 0.5)
    xs = make_inputs(args.batch, args.width, args.modalities, 1)
    g = torch.Generator().manual_seed(2)
    head = torch.randn(args.width, 5, generator=g) / args.width**0.5
    y = torch.randint(0, 5, (args.batch,), generator=g)
    ce = torch.nn.functional.cross_entropy

    x, x_fuse, mask = m.inject(xs, None)
    f = m.make_map(x, x_fuse, mask)
    z0 = m.initial_state(x_fuse).detach()
    res = solve(f, z0, max_iter=105, tol=1e-4)
    z_leaf = res.z.detach().requires_grad_()

    def eval_backward(n_probes: int) -> None:
        fz = f(z_leaf)
        loss = ce(fz[:, -1] @ head, y)
        if n_probes:
            loss = loss + jac_frobenius_sq(fz, z_leaf, n_probes)
        loss.backward(retain_graph=True)

    def step() -> None:
        m.zero_grad(set_to_none=True)
        out, info = m(xs)
        (ce(out @ head, y) + info.jac_loss).backward()

    row = {
        "forward_steps": int(res.nstep),
        "forward_solve_s": fastest(lambda: solve(f, z0, max_iter=105, tol=1e-4), args.repeats),
        "eval_backward_s": fastest(lambda: eval_backward(0), args.repeats),
        "eval_backward_jac1_s": fastest(lambda: eval_backward(1), args.repeats),
        "eval_backward_jac2_s": fastest(lambda: eval_backward(2), args.repeats),
        "full_step_s": fastest(step, args.repeats),
    }
    row["per_probe_s"] = (row["eval_backward_jac2_s"] - row["eval_backward_s"]) / 2
    out = {"batch": args.batch, "width": args.width, "modalities": args.modalities, "threads": args.threads,
           "torch": torch.__version__, **row}
    report(out, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
