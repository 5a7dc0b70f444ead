"""``deqfusion mmimdb``: train and test MM-IMDB genre classifiers with DEQ fusion or a baseline fusion.

Every fusion runs on one harness (same data, encoders, head, optimiser, early stopping and metrics), so that
the table compares fusions only. Writes the layout of :mod:`deqfusion.experiments.runner` into ``--out``:
``config.json``, ``<label>/seed<k>/`` (``result.json``, ``history.csv``, ``checkpoint.pt`` for ``--resume``, which
also holds the selected model), ``per_seed.csv``, ``summary.json``, ``summary.csv`` and ``summary.md``.

Under ``torchrun --nproc_per_node=N`` each run trains with distributed data parallel (``--batch-size`` is the
global batch); only rank 0 writes files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..experiments import mmimdb as experiment
from ..experiments.runner import add_run_arguments, run_from_args
from ..models.mmimdb import mmimdb_model_names

NAME = "mmimdb"
HELP = "MM-IMDB multi-label genre classification (text + poster features)"
DESCRIPTION = (
    "Train MaxOut-MLP encoders with a fusion module on MM-IMDB (MultiBench hdf5 layout), select the epoch "
    "by validation macro F1, test once, over several seeds; write JSON/CSV results and a markdown table."
)


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="multimodal_imdb.hdf5 (MultiBench/GMU layout)")
    p.add_argument(
        "--fusion", nargs="+", default=["deq"], metavar="SPEC",
        help="fusions to compare: NAME or NAME:key=value,key=value (fusion options), NAME one of "
             f"{mmimdb_model_names()}; 'concat' is late fusion. Example: deq deq:b_mode=phantom concat "
             "(default: deq). deq and unrolled default to fusion_norm=gn_relu here, as in the reference's "
             "MM-IMDB code; the resolved options are written to config.json",
    )
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
    add_run_arguments(p, seeds=[0, 1, 2])


def run(args: argparse.Namespace) -> int:
    res = run_from_args(experiment.MMIMDB, experiment.configure, args, distributed=True)
    if res is not None:  # the main process
        print(f"{res['tables']}\nresults written to {args.out}")
    return 0
