"""The MM-Dynamics recipes of the omics experiment and the ``fixed`` protocol that runs them.

Two recipes, each a model, a loss and a training schedule, chosen per dataset:

``mmdynamics``
    MM-Dynamics as its authors publish and train it (:class:`~deqfusion.models.mmdynamics.MMDynamicsClassifier`
    with the concatenation classifier): width 1000, dropout 0.5, the additive loss; Adam lr 1e-4, weight decay
    1e-4, StepLR(500, 0.2), no gradient clipping, 1000 full-batch epochs (BRCA 2500), the final model.
``mmdynamics-deq``
    The DEQ fusion paper's BRCA/ROSMAP model: the same backbone with the concatenation replaced by DEQ fusion
    (plain-sum injection, the library's solver defaults), width 300 (ROSMAP) / 500 (BRCA), the loss growing by
    1.5 per modality plus 20 times the Jacobian penalty; Adam lr 1e-4, weight decay 1e-4, 50 warm-up epochs then
    a cosine decay, gradient-norm clipping 30, 1000 epochs (BRCA 2500), the final model.

The ``fixed`` protocol trains a recipe on every training sample (min-max scaling fitted on them) for its set
number of epochs and scores the final model once on the test samples, which it takes only after training
(:func:`~deqfusion.training.fixed.fit_then_test`): nothing is selected, so nothing is tuned on the test files.
A recipe variant's options (``mmdynamics-deq:f_max_iter=10``) go to its fusion; the command's model and schedule
options (``--hidden``, ``--epochs``, ``--lr``, ...) do not apply to recipe variants.
"""

from __future__ import annotations

import copy
from dataclasses import asdict

from ..errors import UserError
from ..fusion.registry import FusionFactory
from ..models.mmdynamics import CONCAT, MMDynamicsClassifier, mmdynamics_objective
from ..training.config import TrainConfig
from ..training.fixed import fit_then_test
from ..training.seed import seed_everything
from .runner import Run

__all__ = ["PRESETS", "RECIPES", "recipe", "fixed_recipes", "build_mmdynamics", "fixed"]

_ADAM = dict(optimizer="adam", lr=1e-4, weight_decay=1e-4)

#: recipe name -> dataset -> settings (``"default"`` for datasets without their own entry)
RECIPES: dict[str, dict[str, dict]] = {
    "mmdynamics": {
        "default": dict(hidden=1000, dropout=0.5, growth=1.0, lambda_jac=0.0,
                        train=dict(epochs=2500, **_ADAM, schedule="step", step_size=500, gamma=0.2,
                                   clip_norm=None, guard=None)),
        "rosmap": dict(train=dict(epochs=1000)),
    },
    "mmdynamics-deq": {
        "default": dict(hidden=500, dropout=0.5, growth=1.5, lambda_jac=20.0,
                        train=dict(epochs=2500, **_ADAM, schedule="warmup_cosine", warmup_epochs=50,
                                   final_lr=0.0, clip_norm=30.0, guard="skip")),
        "rosmap": dict(hidden=300, train=dict(epochs=1000)),
    },
}

#: the recipes as fusion presets (name -> registered fusion, options); ``concat`` here is MM-Dynamics' own
#: concatenation classifier, not the registered ``concat`` fusion
PRESETS: dict[str, tuple[str, dict]] = {
    "mmdynamics": ("concat", {}),
    "mmdynamics-deq": ("deq", {"injection": "sum"}),
}


def recipe(name: str, dataset: str) -> dict:
    """The resolved settings of recipe ``name`` for ``dataset`` (a fresh dict)."""
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; the fixed protocol runs {sorted(RECIPES)}")
    base = copy.deepcopy(RECIPES[name]["default"])
    own = RECIPES[name].get(dataset, {})
    base.update({k: v for k, v in own.items() if k != "train"})
    base["train"].update(own.get("train", {}))
    return base


#: command options that set what a recipe fixes; the fixed protocol refuses them instead of ignoring them
_RECIPE_OPTIONS = ("hidden", "epochs", "lr", "step_size", "gamma", "eval_every", "patience", "lambda_jac")


def fixed_recipes(args, variants) -> dict:
    """The resolved recipe of every variant of a ``--protocol fixed`` command (recorded in its configuration).

    Refuses variants that are not recipes, and command options that would set what a recipe fixes (width,
    schedule, Jacobian weight, ``--reference-settings``), rather than ignoring them."""
    given = [f"--{k.replace('_', '-')}" for k in _RECIPE_OPTIONS if getattr(args, k, None) is not None]
    if getattr(args, "reference_settings", False):
        given.append("--reference-settings")
    if given:
        raise UserError(f"--protocol fixed trains each recipe with its own settings; drop {', '.join(given)} "
                        f"(recipes: {', '.join(sorted(RECIPES))}; docs/omics.md)")
    others = [v["label"] for v in variants if v["name"] not in RECIPES]
    if others:
        raise UserError(f"--protocol fixed runs the recipes {sorted(RECIPES)}, not {', '.join(others)}")
    return {v["name"]: recipe(v["name"], args.dataset) for v in variants}


def build_mmdynamics(cfg: dict, in_dims, num_classes: int, fusion: dict, modality_dropout: float = 0.0):
    """The omics experiment's model builder for ``--model mmdynamics``: MM-Dynamics around ``fusion`` (a resolved
    spec; ``concat`` is its own concatenation classifier) at the command's width and dropout."""
    return _model(in_dims, num_classes, cfg["hidden"], cfg["dropout"], fusion, modality_dropout)


def _model(in_dims, num_classes, hidden, dropout, fusion: dict, modality_dropout: float = 0.0):
    if fusion["fusion"] == CONCAT:
        if fusion["options"]:
            raise UserError(f"{fusion['label']}: MM-Dynamics' concatenation classifier takes no options")
        chosen = CONCAT
    else:
        chosen = FusionFactory(fusion["fusion"], **(fusion["options"] or {}))
    return MMDynamicsClassifier(in_dims, num_classes, hidden=hidden, dropout=dropout, fusion=chosen,
                                modality_dropout=modality_dropout)


def fixed(run: Run) -> dict:
    """Protocol ``fixed`` for one recipe variant and seed; see the module docstring."""
    cfg, data, variant = run.settings, run.data, run.variant
    if variant["name"] not in RECIPES:
        raise UserError(f"--protocol fixed runs the recipes {sorted(RECIPES)}, not {variant['name']!r}")
    if cfg["train"].get("reference_protocol"):
        raise UserError("--reference-protocol scores the test files during training; the fixed protocol does not")
    rec = recipe(variant["name"], cfg["dataset"])
    try:
        train_cfg = TrainConfig(**{**rec["train"], "eval_every": 10, "checkpoint_every": 100})
    except ValueError as exc:
        raise UserError(f"{variant['label']}: {exc}") from None
    scaled = data.minmax_scaled()  # statistics of the training samples only
    seed_everything(run.seed)
    model = _model(data.in_dims, data.num_classes, rec["hidden"], rec["dropout"], variant)
    objective = mmdynamics_objective(data.num_classes, growth=rec["growth"], lambda_jac=rec["lambda_jac"])
    from .omics import training  # the omics experiment's progress bar and errors (it imports this module)

    with training(run, train_cfg.epochs) as on_epoch:
        res, test = fit_then_test(model, scaled.x_train, scaled.y_train, train_cfg, *objective,
                                  lambda: (scaled.x_test, scaled.y_test), checkpoint_path=run.checkpoint,
                                  resume=run.resume, fingerprint=run.fingerprint, progress=on_epoch)
    return {
        "protocol": "fixed: trained on all training samples for the recipe's epochs; the final model scored once "
                    "on the test samples, which were taken only after training",
        "test_set": "dev holdout from the training files" if cfg.get("dev_holdout") else "test files",
        "recipe": {"name": variant["name"], **{k: v for k, v in rec.items() if k != "train"},
                   "fusion": variant["fusion"], "fusion_options": dict(variant["options"]),
                   "train": asdict(train_cfg)},
        "test": test, "val": {}, "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
        "train_seconds": res.train_seconds, "train_cpu_seconds": res.train_cpu_seconds,
        "seconds_per_epoch": res.seconds_per_epoch, "solver_steps": test.get("solver_steps"), "guard": res.guard,
        "health": res.health, "n_train": int(scaled.y_train.numel()), "n_test": int(scaled.y_test.numel()),
        "num_parameters": sum(p.numel() for p in model.parameters()), "history": res.history,
    }

