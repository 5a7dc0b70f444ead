"""``deqfusion omics``: multi-omics classification (ROSMAP, BRCA, KIPAN, LGG) with any fusion, several seeds.

For every fusion named and every seed: carve a stratified validation part out of the training files, min-max
scale on the rest, train the MM-Dynamics model full-batch with early stopping on the validation part, and
score the test files once, on the selected model. Writes into ``--out``:

- ``config.json``: the resolved configuration;
- ``<fusion>/seed<k>/result.json`` (validation and test scores, selected epoch, timing, solver statistics),
  ``history.csv`` (per-evaluation scores) and ``checkpoint.pt`` (atomic; ``--resume`` continues from it);
- ``per_seed.csv``, ``summary.json``, ``summary.csv`` and ``summary.md`` (mean +- sd over seeds, printed at the
  end); the layout of :mod:`deqfusion.experiments.runner`.

With ``--reference-protocol`` the best *test* score over the evaluations is recorded as well, labelled as the
reference's (optimistic, test-selected) protocol; it never changes training or selection. With
``--dev-holdout F`` the test files are not used: a stratified fraction ``F`` of the training files
plays the test set, for tuning settings without looking at the test set.
"""

from __future__ import annotations

import argparse

from ..data.mogonet import DATASETS
from ..experiments import omics as experiment
from ..experiments.runner import add_run_arguments, run_from_args

NAME = "omics"
HELP = "multi-omics classification (ROSMAP, BRCA, ...) with DEQ or baseline fusion"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="rosmap", choices=sorted(DATASETS), help="named dataset (default rosmap)")
    g.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder with the MOGONET-format files (default: $DEQFUSION_DATA_DIR/<dataset>, then the "
                   "cache, then a download)")
    g.add_argument("--source", default=None, metavar="URL_OR_DIR",
                   help="where to download from (default: the MOGONET repository at a pinned commit); a local "
                   "folder works too")
    g.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="download cache (default: $DEQFUSION_CACHE_DIR or ~/.cache/deqfusion)")
    g.add_argument("--no-download", dest="download", action="store_false", help="never download")
    g.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip the SHA-256 checks (for a modified copy; shapes and class count are still checked)")
    g.add_argument("--modalities", type=int, nargs="+", default=None, metavar="I",
                   help="modality numbers to use (default: all; at least 2)")
    g.add_argument("--val-fraction", type=float, default=0.2,
                   help="stratified fraction of the training files used for validation (default 0.2)")
    g.add_argument("--dev-holdout", type=float, default=None, metavar="F",
                   help="do not use the test files: score a stratified fraction F of the training files instead "
                   "(for tuning)")

    g = p.add_argument_group("model")
    g.add_argument("--fusion", nargs="+", default=["deq"], metavar="SPEC",
                   help="fusion(s) to compare, each NAME or NAME:key=value,...; names: "
                   f"{', '.join(experiment.presets())} or any registered fusion (default deq)")
    g.add_argument("--hidden", type=int, default=None, help="encoder / fusion width (default 500)")
    g.add_argument("--dropout", type=float, default=0.5)
    g.add_argument("--feature-norm", choices=["layer", "none"], default="layer",
                   help="layer (default): the fusion gets LayerNorm(h_v) * confidence_v; none: h_v * confidence_v "
                   "as in the reference (its tiny features leave the DEQ's injections negligible; see "
                   "docs/omics.md)")
    g.add_argument("--lambda-jac", type=float, default=None,
                   help="weight of the Jacobian regulariser (rosmap 5, chosen on dev data; others and the "
                   "reference 20)")

    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=None, help="maximum epochs (full-batch steps)")
    g.add_argument("--lr", type=float, default=None)
    g.add_argument("--weight-decay", type=float, default=1e-4)
    g.add_argument("--step-size", type=int, default=None, help="StepLR period in epochs")
    g.add_argument("--gamma", type=float, default=None, help="StepLR factor")
    g.add_argument("--clip", type=float, default=30.0, help="gradient-norm clipping (0: none)")
    g.add_argument("--eval-every", type=int, default=None, help="epochs between validation scores")
    g.add_argument("--patience", type=int, default=None,
                   help="stop after this many epochs without a better validation score (0: never)")
    g.add_argument("--select", default="ce",
                   help="validation score for selection: ce (cross-entropy, default), acc, auc, f1, ...")
    g.add_argument("--refit", action="store_true",
                   help="after selection on validation, retrain (same seed) on ALL training samples for the "
                   "selected number of epochs and score the test set once with that model; the selected model's "
                   "test score is kept too, as test_selected (the same as --protocol refit)")
    g.add_argument("--protocol", default="validation",
                   help=f"training and scoring protocol: {', '.join(sorted(experiment.PROTOCOLS))} "
                   "(default validation)")
    g.add_argument("--model", default="classifier",
                   help=f"the model around the fusion: {', '.join(sorted(experiment.MODELS))} (default classifier)")
    g.add_argument("--reference-settings", action="store_true",
                   help="the reference's schedule: lr 1e-4, StepLR(500, 0.2), 1000 epochs (rosmap) / 2500 "
                   "(brca), no early stopping, the reference's solver budgets (slow)")
    g.add_argument("--reference-protocol", action="store_true",
                   help="also record the best TEST score over evaluations (the reference's optimistic protocol; "
                   "labelled, never used for selection)")

    g = p.add_argument_group("run")
    add_run_arguments(g, seeds=[0], threads=2)


def run(args) -> int:
    res = run_from_args(experiment.OMICS, experiment.configure, args)
    print(res["tables"])
    print(f"\n{len(res['rows'])} run(s); results in {args.out}")
    return 0
