"""Why a DEQ run under DDP differs from a one-process run: float-level sensitivity, not a synchronisation fault.

Trains copies of one MOSI feature model (same initial weights, same shuffled batches of 128, AdamW, clipping 1,
no dropout, no Jacobian loss) for ``--epochs`` epochs in one process:

- ``full``: the one-process step (gradient of the 128-row batch);
- ``halves``: the DDP step (mean of the gradients of the two 64-row halves, what two processes all-reduce);
- ``noise<k>``: the one-process step with every gradient entry multiplied by ``1 + 1e-7 * N(0, 1)`` (a
  float32-rounding-sized perturbation; ``k`` = 0 .. ``--noisy`` - 1, independent draws).

and prints the dev MAE of each after every epoch (first, the largest difference between the predictions and
the gradients of one 128-row batch and of its two 64-row halves, at initialisation). For concat fusion all copies
agree to float precision; for DEQ fusion (solves not converged at this stage of training) the ``halves`` copy
lands inside the spread of the ``noise`` copies, i.e. the DDP difference is the size of the difference a
rounding-level perturbation makes.

    python benchmarks/ddp_deq_sensitivity.py --fusion deq --noisy 4
"""

from __future__ import annotations

import argparse
import copy
import json

import torch

from deqfusion.commands.mosi_features import fusion_options
from deqfusion.data.mosi import load_mosi_features, standardize
from deqfusion.experiments.mosi_objective import feature_step_fn, split_tensors
from deqfusion.fusion.registry import FusionFactory
from deqfusion.models.mosi_features import MosiFeatureModel


def _steps(info) -> int | None:
    forward = getattr(info, "forward", None)
    return None if forward is None else int(forward.nstep)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--fusion", default="deq", choices=["deq", "concat"])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--noisy", type=int, default=4)
    p.add_argument("--f-max-iter", type=int, default=20)
    p.add_argument("--f-tol", type=float, default=1e-3, help="forward tolerance (1e-12: every solve runs to "
                   "--f-max-iter, whatever its batch)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = standardize(load_mosi_features(args.data_dir))
    mods = ["text", "audio", "video"]
    opts = argparse.Namespace(f_max_iter=args.f_max_iter, f_tol=args.f_tol, b_mode="phantom", phantom_steps=1,
                              b_max_iter=30, b_tol=1e-3, unrolled_steps=7, rank=16, hidden=32, lambda_jac=0.0)
    torch.manual_seed(0)
    fusion = FusionFactory(args.fusion, **fusion_options(args.fusion, opts)) if args.fusion != "concat" else "concat"
    base = MosiFeatureModel({m: data.dims[m] for m in mods}, fusion=fusion, hidden=32, dropout=0, input_dropout=0)
    train, dev = split_tensors(data.splits["train"], mods), split_tensors(data.splits["dev"], mods)
    step = feature_step_fn(mods, 0.0, "l1")
    # batch independence at initialisation: one 128-row batch vs its two 64-row halves
    batch = {k: v[:128] for k, v in train.items()}
    halves = [{k: v[h] for k, v in batch.items()} for h in (slice(0, 64), slice(64, 128))]
    with torch.no_grad():
        full_pred = base({m: batch[m] for m in mods})[0]
        half_pred = torch.cat([base({m: h[m] for m in mods})[0] for h in halves])

    def grad(parts: list[dict]) -> torch.Tensor:
        base.zero_grad()
        for part in parts:
            (step(base, part, True).loss / len(parts)).backward()
        return torch.cat([q.grad.flatten() for q in base.parameters() if q.grad is not None])

    g_full, g_halves = grad([batch]), grad(halves)
    base.zero_grad()
    print(json.dumps({"init_prediction_max_abs_diff": float((full_pred - half_pred).abs().max()),
                      "init_gradient_max_rel_diff": float((g_full - g_halves).abs().max() / g_full.abs().max())}))
    names = ["full", "halves"] + [f"noise{k}" for k in range(args.noisy)]
    models = {k: copy.deepcopy(base) for k in names}
    optims = {k: torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=1e-2) for k, m in models.items()}
    shuffle, noise = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    n = train["labels"].shape[0]
    rows = []
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(n, generator=shuffle)
        for i in range(0, n - 127, 128):
            batch = {k: v[order[i:i + 128]] for k, v in train.items()}
            for name, model in models.items():
                optims[name].zero_grad()
                if name == "halves":
                    for h in (slice(0, 64), slice(64, 128)):
                        (step(model, {k: v[h] for k, v in batch.items()}, True).loss / 2).backward()
                else:
                    step(model, batch, True).loss.backward()
                    if name.startswith("noise"):
                        for q in model.parameters():
                            q.grad.mul_(1 + 1e-7 * torch.randn(q.grad.shape, generator=noise))
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optims[name].step()
        row = {"epoch": epoch}
        with torch.no_grad():
            for name, model in models.items():
                model.eval()
                pred = model({m: dev[m] for m in mods})[0].flatten()
                row[name] = float((pred - dev["labels"].flatten()).abs().mean())
                model.train()
            # batch independence of the trained ``full`` model: the first 128 dev rows as one batch and as halves
            model = models["full"]
            model.eval()
            one = model({m: dev[m][:128] for m in mods})
            two = [model({m: dev[m][h] for m in mods}) for h in (slice(0, 64), slice(64, 128))]
            model.train()
            row["full_pred_128_vs_halves_max_abs_diff"] = float((one[0] - torch.cat([t[0] for t in two])).abs().max())
            row["full_solver_steps_128_and_halves"] = [_steps(one[1])] + [_steps(t[1]) for t in two]
        noisy = [row[k] for k in names if k.startswith("noise")]
        row["noise_range"] = [min(noisy), max(noisy)] if noisy else None
        print(json.dumps(row))
        rows.append(row)


if __name__ == "__main__":
    main()
