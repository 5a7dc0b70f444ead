"""``deqfusion mosi-bert``: the Cross-Modal BERT setting of CMU-MOSI (text + word-aligned audio).

Needs three things: the transcripts ``{train,dev,test}.tsv`` (``--text-dir``), the audio pickle
``MOSI_cmu_audio_CLS.pickle`` holding ``(train, valid, test)`` arrays of shape ``(n, 50, 5)`` (``--audio``),
and a BERT (``--bert``: a local folder with config, weights and vocabulary, or a model name ``transformers``
can load, e.g. ``bert-base-uncased``).

Per seed: fine-tune for ``--epochs`` epochs (batch 24, lr 2e-5, head lr 1e-2, 10 % linear warm-up then linear
decay, loss ``0.5 (y_hat - y)^2 + lambda_jac * R``), select the epoch with the lowest dev loss, evaluate that
model once on the test split. Writes into ``--out`` the layout of :mod:`deqfusion.experiments.runner`:
``config.json``, ``<fusion>/seed<k>/`` (``checkpoint.pt``, ``history.csv``, ``result.json``),
``per_seed.csv``, ``summary.json``, ``summary.csv`` and ``summary.md``; ``--resume`` continues. The DEQ settings
default to the paper's (105 / 106 iterations to 1e-4), not the library's.
"""

from __future__ import annotations

import argparse
import os

import torch

from ..experiments import mosi_bert as experiment
from ..experiments.mosi_bert import head_options
from ..experiments.runner import add_run_arguments, run_from_args

NAME = "mosi-bert"
HELP = "CMU-MOSI with Cross-Modal BERT (text + audio), DEQ fusion of the attention maps or the plain model"
DESCRIPTION = __doc__

__all__ = ["NAME", "HELP", "DESCRIPTION", "add_arguments", "run", "head_options"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = os.environ.get("DEQFUSION_DATA_DIR")
    p.add_argument("--text-dir", default=env,
                   help="folder with train.tsv, dev.tsv, test.tsv (or one holding cmu-mosi-text/); "
                   "default $DEQFUSION_DATA_DIR")
    p.add_argument("--audio", required=True, help="the audio pickle (MOSI_cmu_audio_CLS.pickle)")
    p.add_argument("--bert", required=True, help="BERT folder or model name (e.g. a bert-base-uncased copy)")
    p.add_argument("--fusion", nargs="+", default=["deq"],
                   help="deq (the paper), unrolled and/or cmbert (the plain CM-BERT)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=24)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--head-lr", type=float, default=1e-2, help="learning rate of the fusion head")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.1, help="warm-up fraction of all steps")
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--lambda-jac", type=float, default=0.01)
    p.add_argument("--max-seq-length", type=int, default=50)
    p.add_argument("--text-scale", choices=["sample", "batch", "none"], default="sample",
                   help="scaling of the text projection: per sample (default) or per batch (the reference)")
    p.add_argument("--train-embeddings", action="store_true",
                   help="also fine-tune BERT's embeddings (the reference freezes them)")
    p.add_argument("--f-max-iter", type=int, default=105)
    p.add_argument("--f-tol", type=float, default=1e-4)
    p.add_argument("--b-mode", choices=["implicit", "phantom"], default="implicit")
    p.add_argument("--b-max-iter", type=int, default=106)
    p.add_argument("--b-tol", type=float, default=1e-4)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_run_arguments(p)


def run(args: argparse.Namespace) -> int:
    print(run_from_args(experiment.MOSI_BERT, experiment.configure, args)["tables"])
    return 0
