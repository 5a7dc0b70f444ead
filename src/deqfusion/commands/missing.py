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

Writes into ``--out`` the layout of :mod:`deqfusion.experiments.runner`: ``config.json``,
``<method>/seed<k>/result.json`` + ``history.csv`` + ``checkpoint.pt`` (``--resume`` continues killed runs),
``per_seed.csv``, ``summary.json``, ``summary.csv`` and ``summary.md`` (mean +- sd).
"""

from __future__ import annotations

import argparse

from ..experiments import missing as experiment
from ..experiments.missing import DEFAULT_METHODS, METHODS
from ..experiments.runner import add_run_arguments, run_from_args

NAME = "missing"
HELP = "missing modality at test time: TCGA breast (mixOmics), protein absent from the test set"
DESCRIPTION = __doc__


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="the tcga-breast-mixomics folder or the data root holding it (default $DEQFUSION_DATA_DIR)")
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, metavar="M",
                   help=f"methods to compare: {', '.join(METHODS)} (default: {' '.join(DEFAULT_METHODS)})")
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
    add_run_arguments(p, threads=1)  # one thread: faster than two for these small full-batch models


def run(args) -> int:
    print(run_from_args(experiment.MISSING, experiment.configure, args)["tables"])
    return 0
