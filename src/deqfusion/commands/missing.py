"""``deqfusion missing``: a modality missing for real at test time (TCGA breast, mixOmics: no protein in the test set).

The training part has mRNA, miRNA and protein for 150 samples; the test part has 70 samples and no protein. For
every method and seed: carve a stratified validation part out of the training samples, min-max scale on the rest,
train the multi-omics model (MM-Dynamics backbone, :mod:`deqfusion.models.omics`) full-batch, select the epoch on
the validation part *with the protein hidden* (the condition the test set imposes), and score the test set once.

Methods (``--methods``, default all of the first four):

- ``deq-dropout``: DEQ fusion trained on all three omics with random modality drop-out (``--modality-dropout``);
  tested with the protein absent (presence mask: no injection, no purified term, no unimodal state for it);
- ``deq-2mod``: DEQ fusion trained on mRNA + miRNA only;
- ``concat-zero``: concatenation fusion trained on all three, the missing protein imputed by zeros;
- ``concat-dropout``: the same with modality drop-out in training (zeros for dropped modalities);
- ``deq-full``: DEQ fusion trained on all three without drop-out, tested with the protein absent.

Writes into ``--out``: ``config.json``, ``<method>/seed<k>/result.json`` + ``history.csv`` + ``checkpoint.pt``
(``--resume`` continues killed runs), ``per_seed.csv``, ``summary.json`` and ``summary.md`` (mean +- std).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data.mixomics import load_mixomics
from ..errors import DataError, UserError
from ..models.omics import OmicsClassifier, omics_objective
from ..training.checkpoint import CheckpointError, atomic_write_json
from ..training.fullbatch import FullBatchConfig, evaluate, fit, stratified_split
from ..training.guard import TrainingDiverged
from ..training.results import finished_result, format_mean_std, markdown_table, summarize, write_csv, write_json
from ..training.seed import seed_everything

NAME = "missing"
HELP = "missing modality at test time: TCGA breast (mixOmics), protein absent from the test set"
DESCRIPTION = __doc__

log = logging.getLogger(__name__)

#: method -> (fusion, modalities trained on, modality drop-out on?)
METHODS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "deq-dropout": ("deq", ("mrna", "mirna", "protein"), True),
    "deq-2mod": ("deq", ("mrna", "mirna"), False),
    "concat-zero": ("concat", ("mrna", "mirna", "protein"), False),
    "concat-dropout": ("concat", ("mrna", "mirna", "protein"), True),
    "deq-full": ("deq", ("mrna", "mirna", "protein"), False),
}
DEFAULT_METHODS = ["deq-dropout", "deq-2mod", "concat-zero", "concat-dropout"]
#: DEQ solver settings (the omics command's CPU defaults)
DEQ_OPTIONS = {"injection": "sum", "f_max_iter": 30, "f_tol": 1e-3, "b_mode": "phantom", "phantom_steps": 5}
METRICS = ["acc", "f1_weighted", "f1_macro"]
#: the protocol: the modality absent from the test part (its test file is neither required nor read)
TEST_MISSING = ("protein",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="the tcga-breast-mixomics folder or the data root holding it (default $DEQFUSION_DATA_DIR)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, metavar="M",
                   help=f"methods to compare: {', '.join(METHODS)} (default: {' '.join(DEFAULT_METHODS)})")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--modality-dropout", type=float, default=0.3,
                   help="probability of hiding each modality of each training sample from the fusion (0.3)")
    p.add_argument("--hidden", type=int, default=100, help="encoder / fusion width (100)")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--lambda-jac", type=float, default=20.0)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--step-size", type=int, default=100)
    p.add_argument("--patience", type=int, default=60, help="epochs without a better validation score (0: never)")
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--guard", choices=["skip", "phantom", "raise", "none"], default="skip",
                   help="divergence guard policy (default skip)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: faster than 2 for these small full-batch models on a shared "
                   "machine; 0: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue the runs found in --out")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def resolve_config(args) -> dict:
    """Check every option before any data is read; the resolved configuration (``config.json``)."""
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    if not args.methods:
        raise UserError("--methods names no method")
    if len(set(args.methods)) != len(args.methods):
        raise UserError(f"--methods has repeats: {args.methods}")
    if not args.seeds or len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds must be distinct, got {args.seeds}")
    if not 0.0 <= args.modality_dropout < 1.0:
        raise UserError(f"--modality-dropout must lie in [0, 1), got {args.modality_dropout}")
    if not 0.0 < args.val_fraction < 1.0:
        raise UserError(f"--val-fraction must lie in (0, 1), got {args.val_fraction}")
    if not 0.0 <= args.dropout < 1.0:
        raise UserError(f"--dropout must lie in [0, 1), got {args.dropout}")
    if args.hidden < 4 or args.hidden % 4:
        raise UserError(f"--hidden must be a positive multiple of 4 (GroupNorm groups), got {args.hidden}")
    for name in ("epochs", "eval_every", "step_size"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.lr <= 0 or args.lambda_jac < 0 or args.patience < 0:
        raise UserError("--lr must be positive, --lambda-jac and --patience non-negative")
    train = FullBatchConfig(epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay, step_size=args.step_size,
                            gamma=0.2, clip_norm=30.0, eval_every=args.eval_every, patience=args.patience or None,
                            select="ce", guard=None if args.guard == "none" else args.guard)
    return {
        "methods": {m: {"fusion": METHODS[m][0], "modalities": list(METHODS[m][1]),
                        "modality_dropout": args.modality_dropout if METHODS[m][2] else 0.0}
                    for m in args.methods},
        "seeds": list(args.seeds),
        "hidden": args.hidden,
        "dropout": args.dropout,
        "lambda_jac": args.lambda_jac,
        "deq_options": DEQ_OPTIONS,
        "feature_norm": "layer",
        "val_fraction": args.val_fraction,
        "selection": "validation cross-entropy with the test set's modalities only (protein hidden)",
        "train": asdict(train),
    }


def _inputs(x: dict, modalities, available) -> list:
    """Model inputs in the model's modality order; modalities not ``available`` are None (absent)."""
    return [x[m] if m in available else None for m in modalities]


def run_one(data, method: str, spec: dict, seed: int, cfg: dict, out_dir: Path, resume: bool) -> dict:
    result_path = out_dir / "result.json"
    fingerprint = {"method": method, "spec": spec, "seed": seed,
                   **{k: cfg[k] for k in ("hidden", "dropout", "lambda_jac", "deq_options", "feature_norm",
                                          "val_fraction", "train", "data")}}
    done = finished_result(result_path, fingerprint) if resume else None
    if done is not None:
        log.info("%s: already finished, skipped", out_dir)
        return done
    seed_everything(seed)
    fit_idx, val_idx = stratified_split(data.y_train, cfg["val_fraction"], seed)
    scaled = data.minmax_scaled(fit_idx)
    mods = spec["modalities"]
    test_has = [m for m in mods if m in scaled.x_test]
    x_fit = _inputs({m: v[fit_idx] for m, v in scaled.x_train.items()}, mods, mods)
    x_val = _inputs({m: v[val_idx] for m, v in scaled.x_train.items()}, mods, test_has)
    x_val_all = _inputs({m: v[val_idx] for m, v in scaled.x_train.items()}, mods, mods)
    x_test = _inputs(scaled.x_test, mods, test_has)
    y_fit, y_val = data.y_train[fit_idx], data.y_train[val_idx]
    model = OmicsClassifier([data.in_dims[m] for m in mods], data.num_classes, hidden=cfg["hidden"],
                            fusion=spec["fusion"], fusion_options=cfg["deq_options"] if spec["fusion"] == "deq"
                            else None, dropout=cfg["dropout"], feature_norm=cfg["feature_norm"],
                            modality_dropout=spec["modality_dropout"])
    loss_fn, probs_fn, metrics_fn = omics_objective(cfg["lambda_jac"], data.num_classes)

    try:
        res = fit(model, x_fit, y_fit, x_val, y_val, FullBatchConfig(**cfg["train"]), loss_fn, probs_fn, metrics_fn,
                  checkpoint_path=out_dir / "checkpoint.pt", resume=resume, fingerprint=fingerprint)
    except CheckpointError as exc:
        raise UserError(str(exc)) from exc
    except TrainingDiverged as exc:
        raise UserError(f"{method} seed {seed}: {exc}") from exc
    test = evaluate(model, x_test, data.y_test, loss_fn, probs_fn, metrics_fn)
    val_all = evaluate(model, x_val_all, y_val, loss_fn, probs_fn, metrics_fn)
    result = {
        "method": method, "seed": seed, "spec": spec,
        "test_modalities": test_has, "test": test,
        "val": res.best_val, "val_all_modalities": val_all,
        "best_epoch": res.best_epoch, "epochs_run": res.epochs_run, "train_seconds": res.seconds,
        "guard": res.guard, "n_fit": int(y_fit.numel()), "n_val": int(y_val.numel()),
        "n_test": int(data.y_test.numel()), "fingerprint": fingerprint,
    }
    write_csv(out_dir / "history.csv", res.history)
    write_json(result_path, result)
    return result


def run(args) -> int:
    cfg = resolve_config(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if (out / "config.json").is_file() and not args.resume:
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    try:
        data = load_mixomics(args.data_dir, test_missing=TEST_MISSING)
    except DataError as exc:
        raise UserError(str(exc)) from exc
    cfg["data"] = data.summary()
    cfg["data"]["folder"] = str(data.folder)
    if (out / "config.json").is_file():
        old = json.loads((out / "config.json").read_text())
        changed = [k for k in cfg if k not in ("seeds", "methods") and old.get(k) != cfg[k]]
        if changed:
            raise UserError(f"{out}/config.json differs from these settings in {changed}; use another --out")
    if args.threads:
        torch.set_num_threads(args.threads)
    atomic_write_json(out / "config.json", cfg)

    rows = []
    jobs = [(m, s) for m in cfg["methods"] for s in cfg["seeds"]]
    t0 = time.perf_counter()
    for method, seed in tqdm(jobs, desc="missing-modality runs", disable=not args.progress):
        res = run_one(data, method, cfg["methods"][method], seed, cfg, out / method / f"seed{seed}", args.resume)
        row = {"method": method, "seed": seed, **{k: res["test"][k] for k in METRICS},
               **{f"val_{k}": res["val"][k] for k in METRICS},
               **{f"val_all_{k}": res["val_all_modalities"][k] for k in METRICS},
               "best_epoch": res["best_epoch"], "epochs_run": res["epochs_run"],
               "train_seconds": round(res["train_seconds"], 2),
               "guard_skipped": (res["guard"] or {}).get("skipped", 0)}
        rows.append(row)
        write_csv(out / "per_seed.csv", rows)
    summaries = {m: summarize([r for r in rows if r["method"] == m],
                              METRICS + [f"val_{k}" for k in METRICS] + [f"val_all_{k}" for k in METRICS]
                              + ["train_seconds", "epochs_run", "guard_skipped"])
                 for m in cfg["methods"]}
    write_json(out / "summary.json", {"summary": summaries, "metrics": METRICS,
                                      "wall_seconds": time.perf_counter() - t0})
    table = summary_table(summaries, cfg, data)
    (out / "summary.md").write_text(table + "\n")
    print(table)
    return 0


def summary_table(summaries: dict, cfg: dict, data) -> str:
    header = ["method", "trained on", "test ACC %", "test F1 (weighted) %", "test F1 (macro) %",
              "val ACC % (protein hidden)", "val ACC % (all three)", "s / seed"]
    rows = []
    for m, s in summaries.items():
        spec = cfg["methods"][m]
        trained = "+".join(spec["modalities"]) + (f", drop-out {spec['modality_dropout']}"
                                                  if spec["modality_dropout"] else "")
        rows.append([m, trained, *format_mean_std(s, METRICS, scale=100.0, digits=1),
                     *format_mean_std(s, ["val_acc", "val_all_acc"], scale=100.0, digits=1),
                     f"{s['train_seconds']['mean']:.0f}"])
    n = len(cfg["seeds"])
    title = (f"TCGA breast (mixOmics): test set of {data.summary()['n_test']} samples without protein; mean +- std "
             f"over {n} seed(s); model selected on a stratified {cfg['val_fraction']:.0%} validation split of the "
             "training samples with the protein hidden")
    return title + "\n\n" + markdown_table(header, rows)
