"""``deqfusion mosi-features``: utterance-level CMU-MOSI regression on the tri-modal bc-LSTM features.

For every modality subset and every fusion named, and every seed: train the MLP-encoder model on the standard
train split (1284 utterances), select the epoch on the dev split (MAE by default), evaluate the selected model
once on the test split. The selected model is also scored on the *clean* part of the test split (test
utterances whose features come from the bc-LSTM test split, i.e. from feature extractors never fitted on them;
the rest of the standard test split was in the extractors' training data, see docs/mosi.md), reported as
``test_clean_*``. ``--split bclstm`` runs the leak-free protocol instead (train and dev from the bc-LSTM train
split, dev by video; test = the bc-LSTM test split, all of it clean). A variant is a subset and a fusion
(``T+A+V deq``; a single modality uses none: ``T none``). Writes into ``--out`` the layout of
:mod:`deqfusion.experiments.runner`: ``config.json``, ``<variant>/seed<k>/`` (``checkpoint.pt``,
``history.csv``, ``result.json``), ``per_seed.csv``, ``summary.json``, ``summary.csv`` and ``summary.md`` (mean
+- sd over seeds). ``--resume`` continues unfinished runs and reuses finished ones.

Multi-process: ``torchrun --nproc_per_node=N -m deqfusion.cli mosi-features ...`` trains each run with
distributed data parallel (gloo on CPU, NCCL with ``--device cuda``); ``--batch-size`` stays the global batch,
metrics cover the whole splits and only rank 0 writes files.
"""

from __future__ import annotations

import argparse
import os

from ..deq import defaults as D
from ..experiments import mosi_features as experiment
from ..experiments.mosi_features import fusion_options
from ..experiments.runner import add_run_arguments, run_from_args

NAME = "mosi-features"
HELP = "CMU-MOSI sentiment regression on utterance-level text/audio/video features (bc-LSTM release)"
DESCRIPTION = __doc__

__all__ = ["NAME", "HELP", "DESCRIPTION", "add_arguments", "run", "fusion_options"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=os.environ.get("DEQFUSION_DATA_DIR"),
                   help="folder holding cmu-mosi-bclstm/ (or that folder itself); default "
                   "$DEQFUSION_DATA_DIR")
    p.add_argument("--fusion", nargs="+", default=["deq"], metavar="SPEC",
                   help="fusion(s) for multi-modality subsets, each NAME or NAME:key=value,... (deq, unrolled, "
                   "concat, tensor, lowrank, ...; the solver flags below are the options of deq)")
    p.add_argument("--subsets", nargs="+", default=["T+A+V"],
                   help="modality subsets: T, A, V, T+A, T+V, A+V, T+A+V (single modalities use no fusion)")
    p.add_argument("--split", choices=["standard", "bclstm"], default="standard",
                   help="standard: the 1284/229/686 split; bclstm: the leak-free protocol (test = the bc-LSTM "
                   "test split, train/dev = the other utterances, dev by video)")
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
    p.add_argument("--device", default="cpu")
    add_run_arguments(p)


def run(args: argparse.Namespace) -> int:
    res = run_from_args(experiment.MOSI_FEATURES, experiment.configure, args, distributed=True)
    if res is not None:  # the main process
        print(f"{res['tables']}\nresults written to {args.out}")
    return 0
