"""DEQFusion inside a small user model, against concatenation, with the library's defaults.

The model: one Linear+ReLU encoder per modality (input width 2 x the fusion width), the fusion, a linear head;
Adam (lr 1e-3), cross-entropy + ``JAC_LOSS_WEIGHT * info.jac_loss`` (the documented weight), on random data
(4 batches of random inputs and two-class labels, cycled). For each shape (batch x width x modalities) a concat
model and a DEQ model (``DEQFusion`` with every default) are trained side by side in one process, one step of
each in turn, and every 10th step each model's inference (eval mode, no gradients) is timed as well. Reports
medians (and the 10th-90th percentile spread) of the step times, their ratio, the DEQ forward and adjoint steps
and the largest relative residual of any step, whether every step reached the tolerance, and the time per
solver iteration (the fusion's solve alone in inference, divided by its iterations). Prints JSON; --out also
writes it.

    python benchmarks/user_model.py --steps 200 --out docs/results/benchmarks/user_model.json
    python benchmarks/user_model.py --table docs/results/benchmarks/user_model.json   # the markdown table
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from _report import report  # benchmarks/_report.py, beside this script
from torch import nn

from deqfusion.deq import defaults as D
from deqfusion.fusion.registry import build_fusion

SHAPES = ["128x64x2", "128x64x6", "256x256x3", "612x500x3"]


class UserModel(nn.Module):
    def __init__(self, fusion: str, in_dim: int, width: int, n: int, classes: int = 2):
        super().__init__()
        self.enc = nn.ModuleList([nn.Sequential(nn.Linear(in_dim, width), nn.ReLU()) for _ in range(n)])
        self.fusion = build_fusion(fusion, in_dims=[width] * n, out_dim=width)
        self.head = nn.Linear(width, classes)

    def forward(self, xs):
        fused, info = self.fusion([e(x) for e, x in zip(self.enc, xs)])
        return self.head(fused), info


def _quantiles(v: list[float]) -> dict:
    s = sorted(v)
    q = lambda p: s[min(len(s) - 1, int(p * (len(s) - 1) + 0.5))]  # noqa: E731
    return dict(median=statistics.median(s), p10=q(0.1), p90=q(0.9), n=len(s))


def run_shape(batch: int, width: int, n: int, steps: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    in_dim = 2 * width
    data = [([torch.randn(batch, in_dim, generator=g) for _ in range(n)], torch.randint(0, 2, (batch,), generator=g))
            for _ in range(4)]
    models, opts = {}, {}
    for name in ("concat", "deq"):
        torch.manual_seed(seed)
        models[name] = UserModel(name, in_dim, width, n)
        opts[name] = torch.optim.Adam(models[name].parameters(), lr=1e-3)
    train_t = {k: [] for k in models}
    infer_t = {k: [] for k in models}
    fwd_steps, bwd_steps, fwd_res, bwd_res = [], [], [], []
    unconverged = 0
    solve_per_iter = []
    for step in range(steps):
        xs, y = data[step % len(data)]
        for name, model in models.items():
            model.train()
            t = time.perf_counter()
            opts[name].zero_grad(set_to_none=True)
            logits, info = model(xs)
            loss = nn.functional.cross_entropy(logits, y) + D.JAC_LOSS_WEIGHT * info.jac_loss
            loss.backward()
            opts[name].step()
            train_t[name].append(time.perf_counter() - t)
            if name == "deq":
                fwd_steps.append(info.forward.nstep)
                fwd_res.append(float(info.forward.rel_residual.max()))
                bwd_steps.append(info.backward.nstep)
                bwd_res.append(float(info.backward.rel_residual.max()))
                unconverged += (info.forward.status != "converged") + (info.backward.status != "converged")
        if step % 10 == 0:
            for name, model in models.items():
                model.eval()
                with torch.no_grad():
                    t = time.perf_counter()
                    model(xs)
                    infer_t[name].append(time.perf_counter() - t)
            with torch.no_grad():  # the fusion's solve alone, per iteration
                fusion = models["deq"].fusion
                feats = [e(x) for e, x in zip(models["deq"].enc, xs)]
                t = time.perf_counter()
                _, info = fusion(feats)
                solve_per_iter.append((time.perf_counter() - t) / max(1, info.forward.nstep))
    tr = {k: _quantiles(v) for k, v in train_t.items()}
    inf = {k: _quantiles(v) for k, v in infer_t.items()}
    return dict(
        shape=f"{batch}x{width}x{n}", steps=steps,
        train_ms={k: {q: (v * 1e3 if q != "n" else v) for q, v in d.items()} for k, d in tr.items()},
        infer_ms={k: {q: (v * 1e3 if q != "n" else v) for q, v in d.items()} for k, d in inf.items()},
        train_ratio=tr["deq"]["median"] / tr["concat"]["median"],
        infer_ratio=inf["deq"]["median"] / inf["concat"]["median"],
        deq_forward_steps=_quantiles(fwd_steps), deq_forward_steps_max=max(fwd_steps),
        deq_backward_steps=_quantiles(bwd_steps), deq_backward_steps_max=max(bwd_steps),
        max_forward_rel_residual=max(fwd_res), max_backward_rel_residual=max(bwd_res),
        solves_not_converged=unconverged, ms_per_solver_iteration=_quantiles([v * 1e3 for v in solve_per_iter]),
    )


def _ms(v: float) -> str:
    return f"{v:.2f}" if v < 1 else f"{v:.1f}" if v < 10 else f"{v:.0f}"


def markdown_table(result: dict, compact: bool = False) -> str:
    """The markdown table of a result of this script (medians; the documentation quotes it as printed);
    ``compact``: fewer columns, for the README."""
    if compact:
        lines = ["| shape | train step, DEQ / concat | inference | iterations | ms / iteration |", "|" + "---|" * 5]
        for r in result["results"]:
            tr, inf = r["train_ms"], r["infer_ms"]
            lines.append(f"| {r['shape']} | {_ms(tr['deq']['median'])} / {_ms(tr['concat']['median'])} ms "
                         f"({r['train_ratio']:.0f}x) | {_ms(inf['deq']['median'])} / {_ms(inf['concat']['median'])} "
                         f"ms ({r['infer_ratio']:.0f}x) | {r['deq_forward_steps']['median']:g} / "
                         f"{r['deq_backward_steps']['median']:g} | {r['ms_per_solver_iteration']['median']:.1f} |")
        return "\n".join(lines)
    head = ("| batch x width x modalities | train step, concat / DEQ | ratio | inference, concat / DEQ | ratio "
            "| DEQ forward / adjoint iterations (median, max) | ms per solver iteration | solves at the budget |")
    lines = [head, "|" + "---|" * 8]
    for r in result["results"]:
        tr, inf = r["train_ms"], r["infer_ms"]
        lines.append(
            f"| {r['shape'].replace('x', ' x ')} | {_ms(tr['concat']['median'])} / {_ms(tr['deq']['median'])} ms "
            f"| {r['train_ratio']:.1f}x | {_ms(inf['concat']['median'])} / {_ms(inf['deq']['median'])} ms "
            f"| {r['infer_ratio']:.1f}x | {r['deq_forward_steps']['median']:g}, {r['deq_forward_steps_max']} / "
            f"{r['deq_backward_steps']['median']:g}, {r['deq_backward_steps_max']} "
            f"| {r['ms_per_solver_iteration']['median']:.2f} | {r['solves_not_converged']} of {2 * r['steps']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=SHAPES, help="BATCHxWIDTHxMODALITIES")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    p.add_argument("--table", metavar="JSON", default=None,
                   help="print the markdown table of a result file this script wrote, and run nothing")
    p.add_argument("--compact", action="store_true", help="with --table: the README's shorter table")
    args = p.parse_args(argv)
    if args.table:
        with open(args.table) as f:
            print(markdown_table(json.load(f), args.compact))
        return 0
    torch.set_num_threads(args.threads)
    rows = []
    for shape in args.shapes:
        b, w, n = (int(v) for v in shape.split("x"))
        rows.append(run_shape(b, w, n, args.steps, args.seed))
        print(f"{shape}: train x{rows[-1]['train_ratio']:.2f}, inference x{rows[-1]['infer_ratio']:.2f}",
              file=sys.stderr)
    argv_s = " ".join(argv if argv is not None else sys.argv[1:])
    report(dict(command=f"python benchmarks/user_model.py {argv_s}".strip(), torch=torch.__version__,
                threads=args.threads, jac_loss_weight=D.JAC_LOSS_WEIGHT,
                defaults=dict(f_max_iter=D.F_MAX_ITER, f_tol=D.F_TOL, b_mode=D.B_MODE, b_max_iter=D.B_MAX_ITER,
                              b_tol=D.B_TOL, jac_n_probes=D.JAC_N_PROBES),
                results=rows), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
