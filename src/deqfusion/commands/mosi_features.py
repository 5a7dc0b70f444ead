"""``deqfusion mosi-features``: utterance-level CMU-MOSI regression on the tri-modal bc-LSTM features.

For every modality subset and every fusion named, and every seed: train the MLP-encoder model on the standard
train split (1284 utterances), select the epoch on the dev split (MAE by default), evaluate the selected model
once on the test split. The selected model is also scored on the *clean* part of the test split (test
utterances whose features come from the bc-LSTM test split, i.e. from feature extractors never fitted on them;
the rest of the standard test split was in the extractors' training data, see docs/mosi.md), reported as
``clean_*``. ``--split bclstm`` runs the leak-free protocol instead (train and dev from the bc-LSTM train
split, dev by video; test = the bc-LSTM test split, all of it clean). Results go to the output folder:
``config.json`` (the resolved settings), ``runs/<subset>__<fusion>/seed<k>/`` (checkpoints and
``result.json``), ``per_seed.csv``, ``summary.json``, ``summary.csv`` and ``summary.md`` (mean +- std over
seeds). ``--resume`` continues unfinished runs and reuses finished ones.

Multi-process: ``torchrun --nproc_per_node=N -m deqfusion.cli mosi-features ...`` trains each run with
distributed data parallel (gloo on CPU, NCCL with ``--device cuda``); ``--batch-size`` stays the global batch,
metrics cover the whole splits and only rank 0 writes files.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.mosi import load_mosi_features, resplit_by_source, standardize
from ..deq import defaults as D
from ..errors import UserError
from ..training.results import markdown_table, summarize, write_csv, write_json
from ..training.seed import seed_everything

NAME = "mosi-features"
HELP = "CMU-MOSI sentiment regression on utterance-level text/audio/video features (bc-LSTM release)"
DESCRIPTION = __doc__

log = logging.getLogger(__name__)

#: metrics shown in summary.md, in order (name, scale, digits)
TABLE_METRICS = [("mae", 1, 3), ("corr", 1, 3), ("acc2_neg_pos", 100, 1), ("f1_neg_pos", 100, 1),
                 ("acc2_neg_nonneg", 100, 1), ("acc7", 100, 1)]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=os.environ.get("DEQFUSION_DATA_DIR"),
                   help="folder holding cmu-mosi-bclstm/ (or that folder itself); default "
                   "$DEQFUSION_DATA_DIR")
    p.add_argument("--out", required=True, help="output folder (created; reused with --resume)")
    p.add_argument("--fusion", nargs="+", default=["deq"],
                   help="fusion name(s) for multi-modality subsets (deq, unrolled, concat, tensor, lowrank, "
                   "...)")
    p.add_argument("--subsets", nargs="+", default=["T+A+V"],
                   help="modality subsets: T, A, V, T+A, T+V, A+V, T+A+V (single modalities use no fusion)")
    p.add_argument("--split", choices=["standard", "bclstm"], default="standard",
                   help="standard: the 1284/229/686 split; bclstm: the leak-free protocol (test = the bc-LSTM "
                   "test split, train/dev = the other utterances, dev by video)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--hidden", type=int, default=64, help="encoder / fusion width")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--input-dropout", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--patience", type=int, default=10, help="early-stopping patience on the dev split")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--fusion-lr", type=float, default=None, help="learning rate of the fusion module")
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--loss", choices=["l1", "mse"], default="l1")
    p.add_argument("--select", default="mae", help="dev metric for epoch selection (mae, loss, corr, ...)")
    p.add_argument("--lambda-jac", type=float, default=D.JAC_LOSS_WEIGHT,
                   help="weight of the DEQ Jacobian regulariser (default: the library's recommended weight)")
    p.add_argument("--f-max-iter", type=int, default=D.F_MAX_ITER, help="DEQ forward solver budget")
    p.add_argument("--f-tol", type=float, default=D.F_TOL)
    p.add_argument("--b-mode", choices=["implicit", "phantom"], default=D.B_MODE)
    p.add_argument("--phantom-steps", type=int, default=D.PHANTOM_STEPS,
                   help="damped unrolled steps of the phantom gradient (with --b-mode phantom)")
    p.add_argument("--b-max-iter", type=int, default=D.B_MAX_ITER)
    p.add_argument("--b-tol", type=float, default=D.B_TOL)
    p.add_argument("--unrolled-steps", type=int, default=7, help="steps of the unrolled (weight-tied) fusion")
    p.add_argument("--rank", type=int, default=16, help="rank of the low-rank tensor fusion")
    p.add_argument("--no-standardize", action="store_true",
                   help="do not z-score features with train statistics")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--resume", action="store_true")


def fusion_options(name: str, args) -> dict:
    if name == "deq":
        opts = {"f_max_iter": args.f_max_iter, "f_tol": args.f_tol, "b_mode": args.b_mode,
                "b_max_iter": args.b_max_iter, "b_tol": args.b_tol}
        if args.b_mode == "phantom":
            opts["phantom_steps"] = args.phantom_steps
        return opts
    if name == "unrolled":
        return {"unrolled_steps": args.unrolled_steps}
    if name == "lowrank":
        return {"rank": args.rank}
    return {}


def _config(args) -> dict:
    cfg = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("resume", "verbose")}
    cfg["data_dir"] = str(Path(args.data_dir).resolve()) if args.data_dir else None
    cfg["out"] = str(Path(args.out).resolve())
    return cfg


def run(args) -> int:
    from ..training import distributed as ddp

    args.device = ddp.setup_from_env(args.device)
    cfg_path = Path(args.out) / "config.json"
    existed = cfg_path.is_file()
    try:
        return _run(args, ddp.is_main())
    except UserError:
        # a refusal (a checkpoint written with other settings) before any run finished: the config.json this
        # call wrote goes again, so that the refused call leaves the folder as it was
        if not existed and ddp.is_main() and not list(Path(args.out).glob("runs/*/*/result.json")):
            cfg_path.unlink(missing_ok=True)
        raise
    finally:
        ddp.cleanup()


def _run(args, main: bool) -> int:
    from ..experiments.runner import DegenerateRuns, numerics
    from ..fusion.registry import available_fusions
    from ..metrics.regression import regression_metrics
    from ..models.mosi_features import MosiFeatureModel
    from ..training import distributed as ddp
    from ..training.checkpoint import load_checkpoint
    from ..training.health import regression_health
    from ..training.minibatch import MinibatchTrainer, TrainerConfig
    from ..training.mosi_regression import (
        feature_step_fn,
        metric_fn,
        parse_subset,
        split_tensors,
        subset_label,
    )

    if not args.data_dir:
        raise UserError("no data folder: pass --data-dir or set DEQFUSION_DATA_DIR")
    try:
        subsets = [parse_subset(s) for s in args.subsets]
    except ValueError as exc:
        raise UserError(str(exc)) from None
    unknown = [f for f in args.fusion if f not in available_fusions()]
    if unknown:
        raise UserError(f"unknown fusion(s) {unknown}; choose from {available_fusions()}")
    if args.epochs < 1 or args.patience < 1 or args.batch_size < 1 or args.hidden < 4:
        raise UserError("--epochs, --patience and --batch-size must be >= 1 and --hidden >= 4")
    if args.phantom_steps < 1:
        raise UserError(f"--phantom-steps must be >= 1, got {args.phantom_steps}")
    scores = ["loss", *(k for k in regression_metrics(np.zeros(2), np.ones(2)) if k not in ("n", "n_nonzero"))]
    if args.select not in scores:
        raise UserError(f"--select {args.select!r} is not a dev score; choose one of {', '.join(scores)}")

    out = Path(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = _config(args)
    cfg["numerics"] = numerics({"device": args.device})
    cfg_path = out / "config.json"
    if cfg_path.is_file() and not args.resume:
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if cfg_path.is_file() and args.resume:
        old = json.loads(cfg_path.read_text())
        keep = ("seeds", "fusion", "subsets", "out", "data_dir", "device")
        diff = sorted(k for k in cfg if k not in keep and old.get(k) != cfg[k])
        if diff:
            raise UserError(f"--resume with other settings than the stored run in {out}: {diff}")
    data = load_mosi_features(args.data_dir)
    if args.split == "bclstm":
        data = resplit_by_source(data)
    if not args.no_standardize:
        data = standardize(data)
    test = data.splits["test"]
    clean_test = test.select_rows(np.array([src == "test" for src in test.source]))
    cfg["data"] = data.summary()
    cfg["data"]["clean_test_count"] = len(clean_test)
    ddp.barrier()  # every process has checked the folder before rank 0 writes into it
    if main:
        write_json(cfg_path, cfg)

    jobs = []
    for mods in subsets:
        fusions = ["none"] if len(mods) == 1 else list(args.fusion)
        for f in fusions:
            for seed in args.seeds:
                jobs.append((mods, f, seed))
    rows, degenerate = [], []
    for mods, fname, seed in tqdm(jobs, desc="mosi-features runs", disable=not main):
        label = subset_label(mods)
        run_dir = out / "runs" / f"{label.replace('+', '')}__{fname}" / f"seed{seed}"
        seed_everything(seed)
        model = MosiFeatureModel(
            {m: data.dims[m] for m in mods}, fusion=fname if fname != "none" else "concat",
            hidden=args.hidden, dropout=args.dropout, input_dropout=args.input_dropout,
            fusion_options=fusion_options(fname, args) if fname != "none" else None,
        )
        group_lrs = {"fusion": args.fusion_lr} if args.fusion_lr and model.fusion is not None else {}
        tcfg = TrainerConfig(
            max_epochs=args.epochs, batch_size=args.batch_size, eval_batch_size=512, lr=args.lr,
            weight_decay=args.weight_decay, group_lrs=group_lrs, select_metric=args.select,
            select_mode="max" if args.select.startswith(("acc", "f1", "corr")) else "min",
            patience=args.patience, grad_clip=args.grad_clip, seed=seed, device=args.device,
            desc=f"{label} {fname} seed {seed}",
        )
        fingerprint = {k: v for k, v in cfg.items() if k not in ("seeds", "fusion", "subsets", "out", "data",
                                                                  "data_dir", "device")}
        fingerprint.update(subset=label, fusion=fname, seed=seed)
        trainer = MinibatchTrainer(model, feature_step_fn(mods, args.lambda_jac, args.loss), metric_fn, tcfg,
                                   out_dir=run_dir, fingerprint=fingerprint)
        splits = {s: split_tensors(data.splits[s], mods) for s in ("train", "dev", "test")}
        result = trainer.fit(splits["train"], splits["dev"], splits["test"], resume=args.resume)
        # the selected model once more, on the clean part of the test split
        model.load_state_dict(load_checkpoint(run_dir / "best.pt", args.device)["model"])
        result["test_clean"], _ = trainer.evaluate(split_tensors(clean_test, mods), desc="clean test")
        result["health"] = regression_health(result["valid"]["mae"], data.splits["dev"].labels,
                                             data.splits["train"].labels)
        if result["health"]["degenerate"]:
            degenerate.append(f"{label} {fname} seed {seed}: {result['health']['degenerate']}")
        if main:
            write_json(run_dir / "result.json", result)
        row = {"subset": label, "fusion": fname, "seed": seed, "best_epoch": result["best_epoch"],
               "epochs_run": result["epochs_run"], "train_time_s": round(result["train_time_s"], 2),
               "degenerate": int(bool(result["health"]["degenerate"]))}
        row.update({f"dev_{k}": v for k, v in result["valid"].items() if k not in ("n", "n_nonzero")})
        row.update({f"test_{k}": v for k, v in result["test"].items()})
        row.update({f"clean_{k}": v for k, v in result["test_clean"].items()})
        rows.append(row)
        if main:
            write_csv(out / "per_seed.csv", rows)
        log.info("%s %s seed %d: test MAE %.3f, Acc-2 (neg/pos) %.3f, corr %.3f", label, fname, seed,
                 result["test"]["mae"], result["test"]["acc2_neg_pos"], result["test"]["corr"])

    summary = []
    for mods in subsets:
        for fname in (["none"] if len(mods) == 1 else args.fusion):
            label = subset_label(mods)
            mine = [r for r in rows if r["subset"] == label and r["fusion"] == fname]
            test = summarize([{k[5:]: v for k, v in r.items() if k.startswith("test_")} for r in mine])
            clean = summarize([{k[6:]: v for k, v in r.items() if k.startswith("clean_")} for r in mine])
            seeds = [r["seed"] for r in mine]
            summary.append(
                {"subset": label, "fusion": fname, "seeds": seeds, "test": test, "test_clean": clean}
            )
    if not main:
        return 0
    write_json(out / "summary.json", summary)
    flat = []
    for s in summary:
        row = {"subset": s["subset"], "fusion": s["fusion"], "n_seeds": len(s["seeds"])}
        for part in ("test", "test_clean"):
            for k, v in s[part].items():
                row[f"{part}_{k}_mean"], row[f"{part}_{k}_std"] = v["mean"], v["std"]
        flat.append(row)
    write_csv(out / "summary.csv", flat)
    header = ["modalities", "fusion"] + [_pretty(m) for m, _, _ in TABLE_METRICS]
    text = []
    for part, title in (("test", "standard test split"), ("test_clean", "clean part of the test split")):
        table = [[s["subset"], s["fusion"]] + [
            f"{s[part][m]['mean'] * sc:.{d}f} +- {s[part][m]['std'] * sc:.{d}f}" for m, sc, d in TABLE_METRICS
        ] for s in summary]
        text.append(f"{title} (mean +- std over seeds)\n\n" + markdown_table(header, table) + "\n")
    if degenerate:
        text.append("**Degenerate runs** (final model worse than the constant predictor on the dev split; see "
                    "docs/robustness.md): " + "; ".join(degenerate) + "\n")
    (out / "summary.md").write_text("\n".join(text))
    if degenerate:
        raise DegenerateRuns(f"{len(degenerate)} of {len(rows)} run(s) ended with a degenerate model "
                             f"({degenerate[0]}{'; ...' if len(degenerate) > 1 else ''}); the results are written "
                             f"to {out} and flagged in summary.md")
    return 0


def _pretty(metric: str) -> str:
    return {"mae": "MAE", "corr": "Corr", "acc2_neg_pos": "Acc-2 (neg/pos)", "f1_neg_pos": "F1 (neg/pos)",
            "acc2_neg_nonneg": "Acc-2 (neg/non-neg)", "acc7": "Acc-7"}.get(metric, metric)
