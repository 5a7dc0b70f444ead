"""Multi-omics classification (ROSMAP, BRCA, KIPAN, LGG): the omics experiment.

For every fusion and seed: carve a stratified validation part out of the training files, min-max scale on the
rest, train the multi-omics model full-batch with early stopping on the validation part, and score the test
files once, on the selected model (protocol ``validation``). Protocol ``refit`` then retrains on all training
samples for the selected number of epochs and scores that model once (the selected model's score is kept as
``test_selected``). With ``dev_holdout`` a stratified part of the training files plays the test set.

Pluggable: :data:`MODELS` (model name -> builder) and :data:`PROTOCOLS` (protocol name -> function of the
experiment and one run).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict

import torch

from ..data.mogonet import OmicsData, load_dataset
from ..errors import UserError
from ..fusion.registry import FusionFactory
from ..models.omics import OmicsClassifier, omics_objective
from ..training.checkpoint import CheckpointError, load_checkpoint
from ..training.config import TrainConfig
from ..training.data import stratified_split
from ..training.guard import TrainingDiverged
from ..training.objective import evaluate, fit
from ..training.seed import seed_everything
from .fusion_spec import resolve_fusion_specs
from .mmdynamics import PRESETS as MMDYNAMICS_PRESETS
from .mmdynamics import build_mmdynamics, fixed, fixed_recipes
from .runner import Column, Experiment, LoadedRun, Run, Table, register_experiment

log = logging.getLogger(__name__)

#: per-dataset defaults. ``hidden``: the reference's width. The optimiser settings are the reference's
#: (Adam 1e-4, weight decay 1e-4, clipping 30) except the schedule and epoch budget, shortened for CPU
#: (see docs/omics.md for how they were chosen, on validation data only). ROSMAP's lambda_jac 5 (the
#: reference: 20) and hidden 500 (before: 300) were chosen on the dev holdout (docs/omics.md, rounds 2 and 3).
_LONG = dict(hidden=500, epochs=500, lr=1e-3, step_size=200, gamma=0.2, patience=150, eval_every=5, lambda_jac=20.0)
DATASET_DEFAULTS: dict[str, dict] = {
    "rosmap": dict(hidden=500, epochs=200, lr=1e-3, step_size=100, gamma=0.2, patience=60, eval_every=5,
                   lambda_jac=5.0),
    "brca": dict(_LONG),
    "kipan": dict(_LONG),
    "lgg": dict(_LONG),
}
#: the trainer writes its checkpoint every this many epochs (and at the end)
CHECKPOINT_EVERY = 100
#: the reference's schedule (``reference_settings``): lr 1e-4, StepLR(500, 0.2), no early stopping
REFERENCE_SCHEDULE = dict(lr=1e-4, step_size=500, gamma=0.2, patience=0, eval_every=50, lambda_jac=20.0)

#: DEQ settings of this experiment: the library's defaults (``deqfusion.deq.defaults``, docs/defaults.md).
#: ``reference_settings`` reproduces the paper: its initialisation and its solver budgets.
DEQ_LIBRARY: dict = {}
DEQ_REFERENCE: dict = {"init": "reference", "f_max_iter": 105, "f_tol": 1e-4, "b_max_iter": 106, "b_tol": 1e-4,
                       "b_mode": "implicit"}


def presets(reference: bool = False) -> dict[str, tuple[str, dict]]:
    """The fusion presets (name -> registered fusion, options). The reference's BRCA/ROSMAP code injects the
    plain sum of the modality features (no learned weights) into the fusion block."""
    deq = DEQ_REFERENCE if reference else DEQ_LIBRARY
    return {
        "deq": ("deq", {"injection": "sum", **deq}),
        "deq-no-unimodal": ("deq", {"injection": "sum", "unimodal": False, **deq}),
        "unrolled": ("unrolled", {"injection": "sum", "unrolled_steps": 4}),
        "concat": ("concat", {}),
        "sum": ("sum", {}),
        **MMDYNAMICS_PRESETS,
    }


def metric_keys(num_classes: int) -> list[str]:
    return ["acc", "f1", "auc"] if num_classes == 2 else ["acc", "f1_weighted", "f1_macro"]


#: what ``--select`` may name: the classification metrics (``f1`` and ``auc`` for two classes, ``f1_weighted``
#: for more) and the parts of the loss
SELECT_KEYS = ("ce", "loss", "acc", "f1", "auc", "f1_macro", "f1_weighted", "confidence", "jac")

TITLES = {"acc": "ACC", "f1": "F1", "auc": "AUC", "f1_weighted": "F1 (weighted)", "f1_macro": "F1 (macro)"}


def configure(args) -> tuple[dict, list[dict]]:
    """``(settings, variants)`` from the command's options: dataset defaults (or the reference schedule) where
    an option is not given, the fusion specs resolved against :func:`presets`. Checks every value."""
    ds = dict(DATASET_DEFAULTS.get(args.dataset, DATASET_DEFAULTS["brca"]))
    if args.reference_settings:
        ds.update(REFERENCE_SCHEDULE, epochs=2500 if args.dataset == "brca" else 1000)
    pick = {k: ds[k] if getattr(args, k) is None else getattr(args, k) for k in ds}
    if args.modalities is not None and len(args.modalities) < 2:
        raise UserError("--modalities needs at least 2 modalities to fuse")
    if not 0.0 < args.val_fraction < 1.0:
        raise UserError(f"--val-fraction must lie in (0, 1), got {args.val_fraction}")
    if args.select not in SELECT_KEYS:
        raise UserError(f"--select {args.select!r} is not a validation score; choose one of {', '.join(SELECT_KEYS)}")
    if args.dev_holdout is not None and not 0.0 < args.dev_holdout < 1.0:
        raise UserError(f"--dev-holdout must lie in (0, 1), got {args.dev_holdout}")
    try:
        train = TrainConfig(epochs=pick["epochs"], optimizer="adam", lr=pick["lr"], weight_decay=args.weight_decay,
                            schedule="step", step_size=pick["step_size"], gamma=pick["gamma"],
                            clip_norm=args.clip or None, eval_every=pick["eval_every"],
                            patience=pick["patience"] or None, select=args.select,
                            reference_protocol=args.reference_protocol, checkpoint_every=CHECKPOINT_EVERY)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    settings = {
        "dataset": args.dataset, "modalities": args.modalities, "val_fraction": args.val_fraction,
        "dev_holdout": args.dev_holdout, "model": getattr(args, "model", "classifier"), "hidden": pick["hidden"],
        "dropout": args.dropout, "feature_norm": args.feature_norm, "lambda_jac": pick["lambda_jac"],
        "train": asdict(train), "reference_settings": bool(args.reference_settings),
        "protocol": "refit" if args.refit else getattr(args, "protocol", "validation"),
        "sources": {"data_dir": args.data_dir, "source": args.source, "cache_dir": args.cache_dir,
                    "download": args.download, "verify": args.verify},
    }
    variants = resolve_fusion_specs(args.fusion, presets(args.reference_settings))
    if settings["protocol"] == "fixed":
        settings["recipes"] = fixed_recipes(args, variants)
    return settings, variants


# --------------------------------------------------------------------------------------------------- models


def _classifier(cfg: dict, in_dims, num_classes: int, fusion: dict, modality_dropout: float = 0.0):
    factory = FusionFactory(fusion["fusion"], **(fusion["options"] or {}))
    return OmicsClassifier(in_dims, num_classes, hidden=cfg["hidden"], fusion=factory, dropout=cfg["dropout"],
                           feature_norm=cfg["feature_norm"], modality_dropout=modality_dropout)


#: model name -> ``builder(cfg, in_dims, num_classes, fusion, modality_dropout)``; ``fusion`` is a resolved
#: spec (``{"label", "name", "fusion": registered name, "options"}``)
MODELS: dict[str, Callable] = {"classifier": _classifier, "mmdynamics": build_mmdynamics}


def build_model(cfg: dict, in_dims, num_classes: int, fusion: dict, modality_dropout: float = 0.0):
    """The experiment's model (``cfg["model"]``, default the MM-Dynamics-backbone classifier) around ``fusion``."""
    name = cfg.get("model", "classifier")
    if name not in MODELS:
        raise UserError(f"unknown omics model {name!r}; choose one of {sorted(MODELS)}")
    try:
        return MODELS[name](cfg, in_dims, num_classes, fusion, modality_dropout)
    except (TypeError, ValueError) as exc:
        raise UserError(f"cannot build fusion {fusion['label']!r}: {exc}") from exc


# ----------------------------------------------------------------------------------------------------- data


def dev_holdout(data: OmicsData, fraction: float) -> OmicsData:
    """Replace the test set by a stratified part of the training files (fixed split, seed 0)."""
    keep, hold = stratified_split(data.y_train, fraction, seed=0)
    return OmicsData(
        name=data.name, folder=data.folder, modalities=data.modalities, modality_names=data.modality_names,
        x_train=[x[keep] for x in data.x_train], y_train=data.y_train[keep],
        x_test=[x[hold] for x in data.x_train], y_test=data.y_train[hold],
        num_classes=data.num_classes, feature_names=data.feature_names, class_names=data.class_names,
    )


def load(cfg: dict) -> OmicsData:
    src = cfg.get("sources") or {}
    data = load_dataset(cfg["dataset"], src.get("data_dir"), cfg["modalities"],
                        download_missing=src.get("download", True), source=src.get("source"),
                        cache_dir=src.get("cache_dir"), verify=src.get("verify", True))
    return dev_holdout(data, cfg["dev_holdout"]) if cfg.get("dev_holdout") else data


def test_inputs(data: OmicsData, cfg: dict, seed: int, refit: bool = False):
    """``(x_fit, y_fit, x_val, y_val, x_test, y_test)`` of one seed: the validation split, min-max scaling fitted
    on the fitting part (on all training samples for the refit)."""
    if refit:
        scaled = data.minmax_scaled(torch.arange(data.y_train.numel()))
        return scaled.x_train, scaled.y_train, None, None, scaled.x_test, scaled.y_test
    fit_idx, val_idx = stratified_split(data.y_train, cfg["val_fraction"], seed)
    scaled = data.minmax_scaled(fit_idx)
    return ([x[fit_idx] for x in scaled.x_train], scaled.y_train[fit_idx], [x[val_idx] for x in scaled.x_train],
            scaled.y_train[val_idx], scaled.x_test, scaled.y_test)


# ------------------------------------------------------------------------------------------------ training


def _bar(run: Run, total: int):
    """A per-run epoch bar (or None) and its update callback."""
    if not run.progress:
        return None, None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=f"{run.label} seed {run.seed}", leave=False, dynamic_ncols=True)

    def on_epoch(row):
        bar.n = row["epoch"]
        post = {"loss": f"{row['train_loss']:.3f}"}
        if "val_ce" in row:
            post.update(val_ce=f"{row['val_ce']:.3f}", val_acc=f"{row['val_acc']:.3f}")
        bar.set_postfix(post, refresh=False)
        bar.refresh()

    return bar, on_epoch


@contextmanager
def training(run: Run, epochs: int):
    """Around one run's training: yields the per-epoch progress callback (a bar over ``epochs``), turns a
    checkpoint that does not fit into a user error and names the run in a divergence."""
    bar, on_epoch = _bar(run, epochs)
    try:
        yield on_epoch
    except CheckpointError as exc:
        raise UserError(str(exc)) from exc
    except TrainingDiverged as exc:
        raise TrainingDiverged(f"{run.label} seed {run.seed}: {exc}") from exc
    finally:
        if bar is not None:
            bar.close()


def fit_model(run: Run, model, train_cfg: TrainConfig, inputs, objective, checkpoint, fingerprint):
    """:func:`~deqfusion.training.objective.fit` with the run's checkpoint, progress bar and user-facing
    errors."""
    x_fit, y_fit, x_val, y_val, x_test, y_test = inputs
    with training(run, train_cfg.epochs) as on_epoch:
        return fit(model, x_fit, y_fit, x_val, y_val, train_cfg, *objective, x_test=x_test, y_test=y_test,
                   checkpoint_path=checkpoint, resume=run.resume, fingerprint=fingerprint, progress=on_epoch)


def select_and_test(run: Run) -> dict:
    """Protocol ``validation``: train with early stopping on the validation part, score the test set once on
    the selected model."""
    cfg, data = run.settings, run.data
    seed_everything(run.seed)
    inputs = test_inputs(data, cfg, run.seed)
    model = build_model(cfg, data.in_dims, data.num_classes, run.variant)
    objective = omics_objective(cfg["lambda_jac"], data.num_classes)
    res = fit_model(run, model, TrainConfig(**cfg["train"]), inputs, objective, run.checkpoint,
                    run.fingerprint)
    t0 = time.perf_counter()
    test = evaluate(model, inputs[4], inputs[5], *objective)
    result = {
        "protocol": "validation-selected; test scored once on the selected model",
        "test_set": "dev holdout from the training files" if cfg["dev_holdout"] else "test files",
        "test": test, "val": res.val, "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
        "stopped_early": res.stopped_early, "train_seconds": res.train_seconds,
        "train_cpu_seconds": res.train_cpu_seconds,
        "seconds_per_epoch": res.seconds_per_epoch, "test_seconds": time.perf_counter() - t0,
        "solver_steps": test.get("solver_steps"), "guard": res.guard, "health": res.health,
        "n_fit": int(inputs[1].numel()), "n_val": int(inputs[3].numel()), "n_test": int(inputs[5].numel()),
        "num_parameters": sum(p.numel() for p in model.parameters()), "history": res.history,
    }
    if res.reference_best_test is not None:
        result["refbest"] = {"note": "the reference's protocol: best TEST score over evaluations (test-selected, "
                                     "optimistic)", **res.reference_best_test}
    return result


def refit(run: Run) -> dict:
    """Protocol ``refit``: :func:`select_and_test`, then retrain from the same seed on every training sample
    for the selected number of epochs (no validation, no early stopping) and score the test set once."""
    result = select_and_test(run)
    cfg, data = run.settings, run.data
    seed_everything(run.seed)
    inputs = test_inputs(data, cfg, run.seed, refit=True)
    model = build_model(cfg, data.in_dims, data.num_classes, run.variant)
    objective = omics_objective(cfg["lambda_jac"], data.num_classes)
    epochs = max(int(result["best_epoch"]), 1)
    train_cfg = TrainConfig(**dict(cfg["train"], epochs=epochs, patience=None, reference_protocol=False,
                                       min_epochs=0))
    res = fit_model(run, model, train_cfg, inputs, objective, run.dir / "refit_checkpoint.pt",
                    dict(run.fingerprint, refit_epochs=epochs))
    test = evaluate(model, inputs[4], inputs[5], *objective)
    result["protocol"] = ("epochs selected on validation; refit on all training samples for that many epochs; "
                          "test scored once on the refit model (test_selected: the validation-selected model, "
                          "also scored once)")
    result["test_selected"], result["test"] = result["test"], test
    result["solver_steps"] = test.get("solver_steps")
    result["refit"] = {"epochs": epochs, "n_train": int(inputs[1].numel()), "seconds": res.train_seconds,
                       "cpu_seconds": res.train_cpu_seconds,
                       "final_loss": res.history[-1].get("train_loss") if res.history else None}
    result["train_seconds"] += res.train_seconds  # selection run + refit
    result["train_cpu_seconds"] += res.train_cpu_seconds
    return result


#: protocol name -> ``fn(run) -> result``
PROTOCOLS: dict[str, Callable[[Run], dict]] = {"validation": select_and_test, "refit": refit, "fixed": fixed}


def train(run: Run) -> dict:
    name = run.settings.get("protocol", "validation")
    if name not in PROTOCOLS:
        raise UserError(f"unknown omics protocol {name!r}; choose one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name](run)


# -------------------------------------------------------------------------------------------------- tables


def tables(config: dict) -> list[Table]:
    cfg, data = config["settings"], config["data"]
    keys = metric_keys(data["num_classes"])
    where = "dev holdout from the training files" if cfg["dev_holdout"] else "test files"
    if cfg.get("protocol") == "fixed":
        return [Table(f"{data['name']}: {where}; each recipe trained on all training samples for its set number of "
                      "epochs, the final model scored once (no selection)",
                      [Column(f"test_{k}", TITLES[k] + " %", 100.0, 1) for k in keys])]
    title = (f"{data['name']}: {where}; model selected on a stratified {cfg['val_fraction']:.0%} validation split "
             "of the training files")
    if cfg.get("protocol") == "refit":
        title += ("; then refit on all training samples for the selected number of epochs, test scored once on "
                  "the refit model (s / run: selection run + refit)")
    out = [Table(title, [Column(f"test_{k}", TITLES[k] + " %", 100.0, 1) for k in keys])]
    if cfg.get("protocol") == "refit":
        out.append(Table("Without refit (the validation-selected model, test scored once; same runs)",
                         [Column(f"test_selected_{k}", TITLES[k] + " %", 100.0, 1) for k in keys], timing=False))
    if cfg["train"]["reference_protocol"]:
        out.append(Table("Reference protocol (best TEST score over evaluations, test-selected, optimistic)",
                         [Column(f"refbest_{k}", TITLES[k] + " %", 100.0, 1) for k in keys], timing=False))
    return out


def restore(loaded: LoadedRun, label: str, seed: int, data_dir: str | None = None) -> dict:
    """The model the test set was scored on (with ``refit``: the one retrained on all training samples) and its
    test inputs, as the run saw them."""
    cfg, variant = loaded.settings, loaded.variant(label)
    if cfg.get("protocol") == "fixed":
        raise UserError("restoring a model of a fixed-protocol run is not supported")
    run_dir = loaded.path / label / f"seed{seed}"
    refit = cfg.get("protocol") == "refit" and (run_dir / "refit_checkpoint.pt").is_file()
    ckpt = run_dir / ("refit_checkpoint.pt" if refit else "checkpoint.pt")
    try:
        state = load_checkpoint(ckpt)
    except CheckpointError as exc:
        raise UserError(str(exc)) from None
    best = (state.get("best") or {}).get("model")
    if best is None:
        raise UserError(f"{ckpt} holds no selected model (its best entry): not a finished run of this version")
    sources = dict(cfg.get("sources") or {}, download=False)
    sources["data_dir"] = data_dir or loaded.config["data"].get("folder") or sources.get("data_dir")
    data = load(dict(cfg, sources=sources))
    inputs = test_inputs(data, cfg, seed, refit)
    model = build_model(cfg, data.in_dims, data.num_classes, variant)
    model.load_state_dict(best)
    where = "dev holdout" if cfg.get("dev_holdout") else "test files"
    n = int(inputs[5].numel())
    return {"model": model, "forward": lambda: model(inputs[4]), "names": list(data.modality_names),
            "title": f"{data.name} {where} ({n} samples), {label}, seed {seed}", "checkpoint": str(ckpt),
            "n_samples": n}


def describe(data: OmicsData) -> dict:
    return data.summary()


OMICS = register_experiment(Experiment(
    name="omics", load=load, train=train, tables=tables, describe=describe,
    parts=("test", "val", "test_selected", "refbest"), restore=restore,
))
