"""CMU-MOSI sentiment regression on the tri-modal bc-LSTM utterance features, any modality subset, any fusion.

For every modality subset and fusion (a single modality uses no fusion) and every seed: train the MLP-encoder
model (:class:`~deqfusion.models.mosi_features.MosiFeatureModel`) on the train split, select the epoch on the
dev split (MAE by default), score the selected model once on the test split and on its *clean* part (test
utterances whose features come from extractors never fitted on them; docs/mosi.md). ``split="bclstm"`` is the
leak-free protocol (train and dev from the bc-LSTM train split, dev by video; test = the bc-LSTM test split).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.mosi import load_mosi_features, resplit_by_source, standardize
from ..errors import UserError
from ..fusion.registry import FusionFactory, available_fusions
from ..metrics.regression import regression_metrics
from ..models.mosi_features import MosiFeatureModel
from ..training.checkpoint import load_checkpoint
from ..training.config import TrainConfig
from ..training.health import regression_health
from ..training.seed import seed_everything
from . import minibatch
from . import mosi_objective as mr
from .fusion_spec import resolve_fusion_specs
from .runner import Column, Experiment, Run, Table, register_experiment

#: metrics shown in summary.md, in order (name, heading, scale, digits)
TABLE_METRICS = [("mae", "MAE", 1, 3), ("corr", "Corr", 1, 3), ("acc2_neg_pos", "Acc-2 (neg/pos)", 100, 1),
                 ("f1_neg_pos", "F1 (neg/pos)", 100, 1), ("acc2_neg_nonneg", "Acc-2 (neg/non-neg)", 100, 1),
                 ("acc7", "Acc-7", 100, 1)]
#: the command's options that are settings of every run (the rest name variants, seeds or sources)
SETTINGS = ("split", "hidden", "dropout", "input_dropout", "epochs", "patience", "batch_size", "lr", "fusion_lr",
            "weight_decay", "grad_clip", "loss", "select", "lambda_jac", "f_max_iter", "f_tol", "b_mode",
            "phantom_steps", "b_max_iter", "b_tol", "unrolled_steps", "rank", "no_standardize")


def fusion_options(name: str, opts) -> dict:
    """The fusion's keyword arguments from the command's options (any object with the option attributes)."""
    if name == "deq":
        out = {"f_max_iter": opts.f_max_iter, "f_tol": opts.f_tol, "b_mode": opts.b_mode,
               "b_max_iter": opts.b_max_iter, "b_tol": opts.b_tol}
        if opts.b_mode == "phantom":
            out["phantom_steps"] = opts.phantom_steps
        return out
    if name == "unrolled":
        return {"unrolled_steps": opts.unrolled_steps}
    if name == "lowrank":
        return {"rank": opts.rank}
    return {}


def dev_scores() -> list[str]:
    """The dev scores an epoch can be selected on."""
    return ["loss", *(k for k in regression_metrics(np.zeros(2), np.ones(2)) if k not in ("n", "n_nonzero"))]


def configure(args) -> tuple[dict, list[dict]]:
    """``(settings, variants)`` from the command's options; every value is checked before data is read."""
    if not args.data_dir:
        raise UserError("no data folder: pass --data-dir or set DEQFUSION_DATA_DIR")
    try:
        subsets = [mr.parse_subset(s) for s in args.subsets]
    except ValueError as exc:
        raise UserError(str(exc)) from None
    # NAME or NAME:key=value,...; the command's solver flags are each fusion's preset options
    specs = resolve_fusion_specs(list(dict.fromkeys(args.fusion)),
                                 {name: (name, fusion_options(name, args)) for name in available_fusions()})
    if args.epochs < 1 or args.patience < 1 or args.batch_size < 1 or args.hidden < 4:
        raise UserError("--epochs, --patience and --batch-size must be >= 1 and --hidden >= 4")
    if args.phantom_steps < 1:
        raise UserError(f"--phantom-steps must be >= 1, got {args.phantom_steps}")
    if args.select not in dev_scores():
        raise UserError(f"--select {args.select!r} is not a dev score; choose one of {', '.join(dev_scores())}")
    settings = {k: getattr(args, k) for k in SETTINGS}
    settings["sources"] = {"data_dir": str(Path(args.data_dir).resolve()), "device": args.device}
    variants = []
    for mods in subsets:
        for spec in ([{"label": "none", "fusion": "none", "options": None}] if len(mods) == 1 else specs):
            variants.append({"label": f"{mr.subset_label(mods)} {spec['label']}", "subset": mr.subset_label(mods),
                             "modalities": list(mods), "fusion": spec["fusion"], "options": spec["options"]})
    return settings, variants


def load(cfg: dict) -> dict:
    data = load_mosi_features(cfg["sources"]["data_dir"])
    if cfg["split"] == "bclstm":
        data = resplit_by_source(data)
    if not cfg["no_standardize"]:
        data = standardize(data)
    test = data.splits["test"]
    return {"data": data, "clean_test": test.select_rows(np.array([src == "test" for src in test.source]))}


def describe(loaded: dict) -> dict:
    return {**loaded["data"].summary(), "clean_test_count": len(loaded["clean_test"])}


def build_model(cfg: dict, dims: dict, variant: dict) -> MosiFeatureModel:
    fusion = variant["fusion"]
    factory = FusionFactory(fusion if fusion != "none" else "concat", **(variant["options"] or {}))
    return MosiFeatureModel({m: dims[m] for m in variant["modalities"]}, fusion=factory, hidden=cfg["hidden"],
                            dropout=cfg["dropout"], input_dropout=cfg["input_dropout"])


def train(run: Run) -> dict:
    cfg, data, variant = run.settings, run.data["data"], run.variant
    mods = variant["modalities"]
    seed_everything(run.seed)
    model = build_model(cfg, data.dims, variant)
    tcfg = TrainConfig(
        epochs=cfg["epochs"], batch_size=cfg["batch_size"], eval_batch_size=512, optimizer="adamw", lr=cfg["lr"],
        weight_decay=cfg["weight_decay"],
        group_lrs={"fusion": cfg["fusion_lr"]} if cfg["fusion_lr"] and model.fusion is not None else {},
        select=cfg["select"], select_mode="max" if cfg["select"].startswith(("acc", "f1", "corr")) else "min",
        patience=cfg["patience"], clip_norm=cfg["grad_clip"], shuffle_seed=run.seed,
        device=cfg["sources"]["device"], desc=f"{run.label} seed {run.seed}",
    )
    trainer = minibatch.trainer_for(run, model, mr.feature_step_fn(mods, cfg["lambda_jac"], cfg["loss"]),
                                    mr.metric_fn, tcfg)
    splits = {s: mr.split_tensors(data.splits[s], mods) for s in ("train", "dev", "test")}
    result = minibatch.fit(run, trainer, splits, valid="dev")
    # the selected model (which the trainer left in the model) once more, on the clean part of the test split
    result["test_clean"], _ = trainer.evaluate(mr.split_tensors(run.data["clean_test"], mods), desc="clean test")
    result["health"] = regression_health(result["val"]["mae"], data.splits["dev"].labels,
                                         data.splits["train"].labels)
    return result


def extra_row(result: dict) -> dict:
    return {"train_samples_per_s": result.get("train_samples_per_s")}


def tables(config: dict) -> list[Table]:
    split = "leak-free (bc-LSTM) split" if config["settings"]["split"] == "bclstm" else "standard test split"
    return [Table(f"CMU-MOSI features, {split}: test metrics (epoch selected on dev {config['settings']['select']})",
                  [Column(f"test_{k}", head, scale, digits) for k, head, scale, digits in TABLE_METRICS]),
            Table("clean part of the test split",
                  [Column(f"test_clean_{k}", head, scale, digits) for k, head, scale, digits in TABLE_METRICS])]


def restore(loaded, label: str, seed: int, data_dir: str | None = None) -> dict:
    """A trained run's selected model and its test inputs (for figures)."""
    cfg = dict(loaded.config["settings"])
    if data_dir:
        cfg["sources"] = {**cfg["sources"], "data_dir": data_dir}
    variant = next(v for v in loaded.config["variants"] if v["label"] == label)
    data = load(cfg)["data"]
    model = build_model(cfg, data.dims, variant)
    ckpt = loaded.path / label / f"seed{seed}" / "checkpoint.pt"
    best = (load_checkpoint(ckpt, "cpu").get("best") or {}).get("model")
    if best is None:
        raise UserError(f"{ckpt} holds no selected model (its best entry): not a finished run of this version")
    model.load_state_dict(best)
    mods = variant["modalities"]
    test = mr.split_tensors(data.splits["test"], mods)
    n = int(test["labels"].numel())
    return {"model": model, "forward": lambda: model({m: test[m] for m in mods}), "names": list(mods),
            "title": f"CMU-MOSI features test split ({n} samples), {label}, seed {seed}",
            "checkpoint": str(ckpt), "n_samples": n}


MOSI_FEATURES = register_experiment(Experiment(
    name="mosi_features", load=load, train=train, tables=tables, describe=describe,
    parts=("test", "val", "test_clean"), extra_row=extra_row, restore=restore))
