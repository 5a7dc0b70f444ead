"""``deqfusion mmimdb``: train and test MM-IMDB genre classifiers with DEQ fusion or a baseline fusion.

Every fusion runs on one harness (same data, encoders, head, optimiser, early stopping and metrics), so that
the table compares fusions only. Output folder layout::

    OUT/config.json                         the resolved configuration (checked on --resume)
    OUT/<label>/seed<k>/last.pt, best.pt    checkpoints (atomic), for --resume
    OUT/<label>/seed<k>/result.json         one run: test/valid metrics, history, throughput, memory
    OUT/results.json, results.csv           every run, and mean +- std per fusion over seeds
    OUT/summary.md                          the table
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from pathlib import Path

import torch

from ..data.mmimdb import inspect_file, load_splits
from ..errors import UserError
from ..experiments.fusion_spec import parse_option_value
from ..metrics.multilabel import multilabel_f1
from ..models.mmimdb import (
    EARLY,
    build_mmimdb_model,
    mmimdb_fusion_options,
    mmimdb_model_names,
    mmimdb_step_fn,
)
from ..training.minibatch import MinibatchTrainer, TrainerConfig, TrainingDiverged
from ..training.results import markdown_table, summarize, write_csv, write_json
from ..training.seed import seed_everything

NAME = "mmimdb"
HELP = "MM-IMDB multi-label genre classification (text + poster features)"
DESCRIPTION = (
    "Train MaxOut-MLP encoders with a fusion module on MM-IMDB (MultiBench hdf5 layout), select the epoch "
    "by validation macro F1, test once, over several seeds; write JSON/CSV results and a markdown table."
)

log = logging.getLogger(__name__)

METRICS = ("micro_f1", "macro_f1", "samples_f1", "weighted_f1")
#: configuration keys that may change between a run and its --resume
VOLATILE = ("resume", "device", "progress", "verbose", "command")


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="multimodal_imdb.hdf5 (MultiBench/GMU layout)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--fusion", nargs="+", default=["deq"], metavar="SPEC",
        help="fusions to compare: NAME or NAME:key=value,key=value (fusion options), NAME one of "
             f"{mmimdb_model_names()}; 'concat' is late fusion. Example: deq deq:b_mode=phantom concat "
             "(default: deq). deq and unrolled default to fusion_norm=gn_relu here, as in the reference's "
             "MM-IMDB code; the resolved options are written to config.json",
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="random seeds (default 0 1 2)")
    p.add_argument("--max-epochs", type=int, default=1000)
    p.add_argument("--patience", type=int, default=6, help="epochs without better validation macro F1")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--fusion-lr", type=float, default=1e-4, help="learning rate of the fusion module")
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--lambda-jac", type=float, default=0.1, help="weight of the Jacobian regulariser")
    p.add_argument("--hidden", type=int, default=512, help="encoder output / fusion width")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--split", default=None, metavar="TRAIN_END,VALID_END",
                   help="row indices ending the train and validation splits (default: the fixed split for the "
                        "full file, the same fractions for a file of another size)")
    p.add_argument("--device", default=_default_device(), help="torch device (default: cuda if available)")
    p.add_argument("--resume", action="store_true", help="continue the runs found in --out")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def parse_fusion_spec(spec: str) -> tuple[str, str, dict]:
    """``"deq:b_mode=phantom,f_max_iter=30"`` -> ``(label, "deq", {"b_mode": "phantom", "f_max_iter": 30})``."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    if name not in mmimdb_model_names():
        raise UserError(f"unknown fusion {name!r} in --fusion {spec!r}; choose one of {mmimdb_model_names()}")
    options: dict = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise UserError(f"--fusion {spec!r}: options are key=value pairs separated by commas, got {item!r}")
        options[key.strip()] = parse_option_value(value.strip())
    if options and name == EARLY:
        raise UserError(f"--fusion {spec!r}: early fusion takes no options")
    label = name + "".join(f"_{k}-{v}" for k, v in options.items())
    label = re.sub(r"[^A-Za-z0-9_.-]+", "", label)
    return label, name, options


def _parse_split(text: str | None):
    if text is None:
        return None
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--split takes TRAIN_END,VALID_END (two integers), got {text!r}") from None
    return a, b


def resolve_config(args: argparse.Namespace) -> dict:
    specs = [parse_fusion_spec(s) for s in args.fusion]
    labels = [s[0] for s in specs]
    if len(set(labels)) != len(labels):
        raise UserError(f"--fusion lists the same setting twice: {labels}")
    for name, value in (("--max-epochs", args.max_epochs), ("--batch-size", args.batch_size),
                        ("--patience", args.patience), ("--hidden", args.hidden)):
        if value < 1:
            raise UserError(f"{name} must be >= 1, got {value}")
    if not args.seeds:
        raise UserError("--seeds needs at least one seed")
    if len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds repeats a seed: {args.seeds}")
    if not 0.0 <= args.dropout < 1.0:
        raise UserError(f"--dropout must lie in [0, 1), got {args.dropout}")
    split = _parse_split(args.split)
    info = inspect_file(args.data, split)
    return {
        "data": str(Path(args.data).resolve()),
        "n_rows": info.n_rows,
        "split_bounds": {k: list(v) for k, v in info.bounds.items()},
        "full_split": info.full_split,
        "fusions": [{"label": lab, "fusion": name, "options": mmimdb_fusion_options(name, opts)}
                    for lab, name, opts in specs],
        "seeds": list(args.seeds),
        "max_epochs": args.max_epochs,
        "patience": args.patience,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "fusion_lr": args.fusion_lr,
        "weight_decay": args.weight_decay,
        "lambda_jac": args.lambda_jac,
        "hidden": args.hidden,
        "dropout": args.dropout,
        "threshold": 0.5,
        "selection": "valid macro_f1 (max)",
        "device": args.device,
        "torch": torch.__version__,
    }


def _check_out_dir(out: Path, config: dict, resume: bool) -> None:
    cfg_path = out / "config.json"
    if not cfg_path.exists():
        return
    if not resume:
        raise UserError(f"{out} already holds a run ({cfg_path}); pass --resume to continue it or choose "
                        "another --out folder")
    import json

    try:
        old = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {cfg_path}: {exc}") from exc
    keys = (set(old) | set(config)) - set(VOLATILE) - {"torch"}
    diff = sorted(k for k in keys if old.get(k) != config.get(k))
    if diff:
        raise UserError(f"--resume: the settings differ from {cfg_path} in {diff}; use the original "
                        "settings or another --out folder")


def _metric_fn(pred: torch.Tensor, target: torch.Tensor) -> dict:
    return multilabel_f1(pred, target)


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def run_one(config: dict, spec: dict, seed: int, splits: dict, out: Path, resume: bool, progress: bool,
            main: bool = True) -> dict:
    """Train, select and test one (fusion, seed); returns the run's row for the results table."""
    seed_everything(seed)
    try:
        model = build_mmimdb_model(
            spec["fusion"], text_dim=splits["train"]["text"].shape[1],
            image_dim=splits["train"]["image"].shape[1], num_labels=splits["train"]["labels"].shape[1],
            hidden=config["hidden"], dropout=config["dropout"], fusion_options=spec["options"],
        )
    except (TypeError, ValueError) as exc:
        raise UserError(f"cannot build fusion {spec['label']!r}: {exc}") from exc
    has_fusion = spec["fusion"] != EARLY
    tcfg = TrainerConfig(
        max_epochs=config["max_epochs"], batch_size=config["batch_size"], lr=config["lr"],
        weight_decay=config["weight_decay"], group_lrs={"fusion": config["fusion_lr"]} if has_fusion else {},
        select_metric="macro_f1", select_mode="max", patience=config["patience"], seed=seed,
        device=config["device"], progress=progress, desc=f"{spec['label']} seed {seed}",
    )
    run_dir = out / spec["label"] / f"seed{seed}"
    fingerprint = {k: v for k, v in config.items() if k not in VOLATILE and k != "torch"}
    fingerprint.update(run=spec["label"], seed=seed)
    trainer = MinibatchTrainer(model, mmimdb_step_fn(config["lambda_jac"]), _metric_fn, tcfg, out_dir=run_dir,
                               fingerprint=fingerprint)
    try:
        result = trainer.fit(splits["train"], splits["valid"], splits["test"], resume=resume)
    except TrainingDiverged as exc:
        raise UserError(f"{spec['label']} seed {seed}: {exc}") from exc
    result = {"fusion": spec["label"], "seed": seed, "n_params": _n_params(model),
              "n_fusion_params": _n_params(model.fusion) if has_fusion else 0, **result}
    if main:  # under torchrun only rank 0 writes
        write_json(run_dir / "result.json", result)
    row = {"fusion": spec["label"], "seed": seed}
    row.update({f"test_{k}": result["test"][k] for k in METRICS})
    row.update({f"valid_{k}": result["valid"][k] for k in METRICS})
    row.update(best_epoch=result["best_epoch"], epochs_run=result["epochs_run"],
               train_samples_per_s=result["train_samples_per_s"], peak_memory_mb=result["peak_memory_mb"],
               memory_kind=result["memory_kind"], n_params=result["n_params"],
               n_fusion_params=result["n_fusion_params"])
    return row


def run(args: argparse.Namespace) -> int:
    """Under ``torchrun --nproc_per_node=N`` each run trains with distributed data parallel (``--batch-size`` is
    the global batch); only rank 0 writes files."""
    from ..training import distributed as ddp

    args.device = ddp.setup_from_env(args.device)
    cfg_path = Path(args.out) / "config.json"
    existed = cfg_path.is_file()
    try:
        return _run(args, ddp.is_main())
    except UserError:
        # a refusal (a checkpoint written with other settings) before any run finished: the config.json this
        # call wrote goes again, so that the refused call leaves the folder as it was
        if not existed and ddp.is_main() and not list(Path(args.out).rglob("result.json")):
            cfg_path.unlink(missing_ok=True)
        raise
    finally:
        ddp.cleanup()


def _run(args: argparse.Namespace, main: bool) -> int:
    from ..experiments.runner import numerics
    from ..training import distributed as ddp

    config = resolve_config(args)
    config["numerics"] = numerics({"device": config["device"]})
    out = Path(args.out)
    _check_out_dir(out, config, args.resume)
    ddp.barrier()  # every process has checked the folder before rank 0 writes into it
    if main:
        write_json(out / "config.json", config)

    t0 = time.perf_counter()
    data = load_splits(args.data, _parse_split(args.split))
    device = torch.device(config["device"])
    splits = {name: s.tensors(device) for name, s in data.items()}
    del data
    log.info("loaded %s in %.1fs: %s", args.data, time.perf_counter() - t0,
             {k: len(v["labels"]) for k, v in splits.items()})

    rows = []
    for spec in config["fusions"]:
        for seed in config["seeds"]:
            rows.append(run_one(config, spec, seed, splits, out, args.resume, args.progress, main))
    if not main:
        return 0

    keys = [f"test_{k}" for k in METRICS] + ["train_samples_per_s", "peak_memory_mb", "best_epoch"]
    summary = {spec["label"]: summarize([r for r in rows if r["fusion"] == spec["label"]], keys)
               for spec in config["fusions"]}
    write_json(out / "results.json", {"config": config, "runs": rows, "summary": summary})
    write_csv(out / "results.csv", rows)
    table = summary_table(summary, rows)
    (out / "summary.md").write_text(table + "\n")
    print(table)
    print(f"results written to {out}")
    return 0


def summary_table(summary: dict, rows: list[dict]) -> str:
    """Markdown: test F1 (mean +- std over seeds, in %), throughput, memory and size per fusion."""
    header = ["fusion", "seeds", "micro F1", "macro F1", "samples F1", "weighted F1", "train samples/s",
              "peak MB", "params"]
    body = []
    for label, s in summary.items():
        runs = [r for r in rows if r["fusion"] == label]
        f1 = [f"{100 * s[f'test_{k}']['mean']:.2f} +- {100 * s[f'test_{k}']['std']:.2f}" for k in METRICS]
        body.append([label, len(runs), *f1, f"{s['train_samples_per_s']['mean']:.0f}",
                     f"{s['peak_memory_mb']['mean']:.0f}", f"{runs[0]['n_params']:,}"])
    return markdown_table(header, body)
