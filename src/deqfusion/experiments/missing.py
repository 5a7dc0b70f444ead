"""A modality missing for real at test time: TCGA breast (mixOmics), no protein in the test set.

The training part has mRNA, miRNA and protein for 150 samples; the test part has 70 samples and no protein. For
every method and seed: carve a stratified validation part out of the training samples, min-max scale on the rest,
train the omics experiment's model full-batch, select the epoch on the validation part *with the protein hidden*
(the condition the test set imposes), and score the test set once. The validation part with all three omics is
scored too (``val_all``).
"""

from __future__ import annotations

from dataclasses import asdict

from ..data.mixomics import MixOmicsData, load_mixomics
from ..errors import UserError
from ..models.omics import omics_objective
from ..training.config import TrainConfig
from ..training.data import stratified_split
from ..training.objective import evaluate
from ..training.seed import seed_everything
from . import omics
from .runner import Column, Experiment, Run, Table, register_experiment

MODALITIES = ("mrna", "mirna", "protein")
#: method -> (preset of the omics experiment, modalities trained on, modality drop-out on?)
METHODS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "deq-dropout": ("deq", MODALITIES, True),
    "deq-2mod": ("deq", ("mrna", "mirna"), False),
    "concat-zero": ("concat", MODALITIES, False),
    "concat-dropout": ("concat", MODALITIES, True),
    "deq-full": ("deq", MODALITIES, False),
}
DEFAULT_METHODS = ["deq-dropout", "deq-2mod", "concat-zero", "concat-dropout"]
METRICS = ["acc", "f1_weighted", "f1_macro"]
#: the protocol: the modality absent from the test part (its test file is neither required nor read)
TEST_MISSING = ("protein",)


def variants(methods, modality_dropout: float) -> list[dict]:
    """One variant per method: the omics experiment's fusion preset (its CPU DEQ settings), the modalities
    trained on and the modality drop-out."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UserError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    if not methods:
        raise UserError("--methods names no method")
    out = []
    for m in methods:
        preset, mods, dropout = METHODS[m]
        fusion, options = omics.presets()[preset]
        out.append({"label": m, "name": preset, "fusion": fusion, "options": dict(options), "modalities": list(mods),
                    "modality_dropout": modality_dropout if dropout else 0.0})
    return out


def configure(args) -> tuple[dict, list[dict]]:
    """``(settings, variants)`` from the command's options; checks every value before any data is read."""
    checks = [(0.0 <= args.modality_dropout < 1.0,
               f"--modality-dropout must lie in [0, 1), got {args.modality_dropout}"),
              (0.0 < args.val_fraction < 1.0, f"--val-fraction must lie in (0, 1), got {args.val_fraction}"),
              (0.0 <= args.dropout < 1.0, f"--dropout must lie in [0, 1), got {args.dropout}"),
              (args.hidden >= 4 and args.hidden % 4 == 0,
               f"--hidden must be a positive multiple of 4 (GroupNorm groups), got {args.hidden}"),
              (args.lr > 0 and args.lambda_jac >= 0 and args.patience >= 0,
               "--lr must be positive, --lambda-jac and --patience non-negative")]
    checks += [(getattr(args, n) >= 1, f"--{n.replace('_', '-')} must be >= 1, got {getattr(args, n)}")
               for n in ("epochs", "eval_every", "step_size")]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    train = TrainConfig(epochs=args.epochs, optimizer="adam", lr=args.lr, weight_decay=args.weight_decay,
                        schedule="step", step_size=args.step_size, gamma=0.2, clip_norm=30.0,
                        eval_every=args.eval_every, patience=args.patience or None, select="ce",
                        guard=None if args.guard == "none" else args.guard, checkpoint_every=omics.CHECKPOINT_EVERY)
    settings = {"model": "classifier", "hidden": args.hidden, "dropout": args.dropout, "lambda_jac": args.lambda_jac,
                "feature_norm": "layer", "val_fraction": args.val_fraction,
                "selection": "validation cross-entropy with the test set's modalities only (protein hidden)",
                "train": asdict(train), "sources": {"data_dir": args.data_dir}}
    return settings, variants(args.methods, args.modality_dropout)


def load(cfg: dict) -> MixOmicsData:
    return load_mixomics((cfg.get("sources") or {}).get("data_dir"), test_missing=TEST_MISSING)


def describe(data: MixOmicsData) -> dict:
    return {**data.summary(), "folder": str(data.folder)}


def _inputs(x: dict, modalities, available) -> list:
    """Model inputs in the model's modality order; modalities not ``available`` are None (absent)."""
    return [x[m] if m in available else None for m in modalities]


def train(run: Run) -> dict:
    cfg, data, spec = run.settings, run.data, run.variant
    seed_everything(run.seed)
    fit_idx, val_idx = stratified_split(data.y_train, cfg["val_fraction"], run.seed)
    scaled = data.minmax_scaled(fit_idx)
    mods = spec["modalities"]
    test_has = [m for m in mods if m in scaled.x_test]
    part = {name: {m: v[idx] for m, v in scaled.x_train.items()} for name, idx in (("fit", fit_idx), ("val", val_idx))}
    y_fit, y_val = data.y_train[fit_idx], data.y_train[val_idx]
    x_test = _inputs(scaled.x_test, mods, test_has)
    inputs = (_inputs(part["fit"], mods, mods), y_fit, _inputs(part["val"], mods, test_has), y_val, x_test,
              data.y_test)
    model = omics.build_model(cfg, [data.in_dims[m] for m in mods], data.num_classes, spec, spec["modality_dropout"])
    objective = omics_objective(cfg["lambda_jac"], data.num_classes)
    res = omics.fit_model(run, model, TrainConfig(**cfg["train"]), inputs, objective, run.checkpoint,
                          run.fingerprint)
    test = evaluate(model, x_test, data.y_test, *objective)
    val_all = evaluate(model, _inputs(part["val"], mods, mods), y_val, *objective)
    return {"test_modalities": test_has, "test": test, "val": res.val, "val_all": val_all,
            "best_epoch": res.best_epoch, "epochs_run": res.epochs_run, "train_seconds": res.train_seconds,
            "solver_steps": test.get("solver_steps"), "guard": res.guard, "health": res.health,
            "n_fit": int(y_fit.numel()),
            "n_val": int(y_val.numel()), "n_test": int(data.y_test.numel()), "history": res.history}


def tables(config: dict) -> list[Table]:
    trained = "; ".join(
        f"{v['label']}: {v['fusion']} on {'+'.join(v['modalities'])}"
        + (f", drop-out {v['modality_dropout']}" if v["modality_dropout"] else "") for v in config["variants"])
    title = (f"TCGA breast (mixOmics): test set of {config['data']['n_test']} samples without protein; model "
             f"selected on a stratified {config['settings']['val_fraction']:.0%} validation split of the training "
             f"samples with the protein hidden; trained as {trained}")
    cols = [Column("test_acc", "test ACC %", 100, 1), Column("test_f1_weighted", "test F1 (weighted) %", 100, 1),
            Column("test_f1_macro", "test F1 (macro) %", 100, 1),
            Column("val_acc", "val ACC % (protein hidden)", 100, 1),
            Column("val_all_acc", "val ACC % (all three)", 100, 1)]
    return [Table(title, cols)]


MISSING = register_experiment(Experiment(name="missing", load=load, train=train, tables=tables, describe=describe,
                                         parts=("test", "val", "val_all")))
