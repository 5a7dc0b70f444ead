"""``deqfusion mosi-bert``: the Cross-Modal BERT setting of CMU-MOSI (text + word-aligned audio).

Needs three things: the transcripts ``{train,dev,test}.tsv`` (``--text-dir``), the audio pickle
``MOSI_cmu_audio_CLS.pickle`` holding ``(train, valid, test)`` arrays of shape ``(n, 50, 5)`` (``--audio``),
and a BERT (``--bert``: a local folder with config, weights and vocabulary, or a model name ``transformers``
can load, e.g. ``bert-base-uncased``).

Per seed: fine-tune for ``--epochs`` epochs (batch 24, lr 2e-5, head lr 1e-2, 10 % linear warm-up then linear
decay, loss ``0.5 (y_hat - y)^2 + lambda_jac * R``), select the epoch with the lowest dev loss, evaluate that
model once on the test split. Writes ``config.json``, ``runs/<fusion>/seed<k>/`` (checkpoints,
``result.json``), ``per_seed.csv``, ``summary.json``, ``summary.csv`` and ``summary.md``;
``--resume`` continues.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data.mosi import SPLITS, check_alignment, load_mosi_audio, load_mosi_text, resolve_text_root
from ..errors import UserError
from ..training.results import markdown_table, summarize, write_csv, write_json
from ..training.seed import seed_everything

NAME = "mosi-bert"
HELP = "CMU-MOSI with Cross-Modal BERT (text + audio), DEQ fusion of the attention maps or the plain model"
DESCRIPTION = __doc__

log = logging.getLogger(__name__)

TABLE_METRICS = [("acc7", 100, 1), ("acc2_ref", 100, 1), ("f1_ref", 100, 1), ("acc2_neg_pos", 100, 1),
                 ("f1_neg_pos", 100, 1), ("acc2_neg_nonneg", 100, 1), ("mae", 1, 3), ("corr", 1, 3)]


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = os.environ.get("DEQFUSION_DATA_DIR")
    p.add_argument("--text-dir", default=env,
                   help="folder with train.tsv, dev.tsv, test.tsv (or one holding cmu-mosi-text/); "
                   "default $DEQFUSION_DATA_DIR")
    p.add_argument("--audio", required=True, help="the audio pickle (MOSI_cmu_audio_CLS.pickle)")
    p.add_argument("--bert", required=True, help="BERT folder or model name (e.g. a bert-base-uncased copy)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--fusion", nargs="+", default=["deq"],
                   help="deq (the paper), unrolled and/or cmbert (the plain CM-BERT)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
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
    p.add_argument("--resume", action="store_true")


def head_options(fusion: str, args) -> dict:
    opts: dict = {"seq_len": args.max_seq_length, "text_scale": args.text_scale, "fusion": fusion}
    if fusion == "deq":
        opts["fusion_options"] = {"f_max_iter": args.f_max_iter, "f_tol": args.f_tol, "b_mode": args.b_mode,
                                  "b_max_iter": args.b_max_iter, "b_tol": args.b_tol}
    return opts


def build_splits(tokenizer, text, audio, max_len: int) -> dict[str, dict[str, torch.Tensor]]:
    from ..models.cmbert import tokenize_texts

    out = {}
    for s in SPLITS:
        d = tokenize_texts(tokenizer, text[s].texts, max_len)
        d["audio"] = torch.from_numpy(audio[s])
        d["labels"] = torch.from_numpy(text[s].labels)
        out[s] = d
    return out


def run(args) -> int:
    from ..models.cmbert import CrossModalBert, cmbert_param_groups, load_bert
    from ..training.minibatch import MinibatchTrainer, TrainerConfig
    from ..training.mosi_regression import bert_step_fn, metric_fn

    if not args.text_dir:
        raise UserError("no text folder: pass --text-dir or set DEQFUSION_DATA_DIR")
    bad = [f for f in args.fusion if f not in ("deq", "cmbert", "unrolled")]
    if bad:
        raise UserError(f"unknown fusion(s) {bad} for the attention maps; choose deq, unrolled or cmbert")
    out = Path(args.out)
    cfg = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("resume", "verbose")}
    cfg["text_dir"] = str(resolve_text_root(args.text_dir).resolve())
    cfg["audio"] = str(Path(args.audio).resolve())
    cfg_path = out / "config.json"
    if cfg_path.is_file() and not args.resume:
        raise UserError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text())
        free = ("seeds", "fusion", "out", "device")
        diff = sorted(k for k in cfg if k not in free and old.get(k) != cfg[k])
        if diff:
            raise UserError(f"--resume with other settings than the stored run in {out}: {diff}")

    text = load_mosi_text(args.text_dir)
    audio = load_mosi_audio(args.audio, seq_len=args.max_seq_length, feat_dim=None)
    check_alignment(text, audio, args.audio)
    _, tokenizer = load_bert(args.bert)
    splits = build_splits(tokenizer, text, audio, args.max_seq_length)
    audio_dim = int(audio["train"].shape[2])
    out.mkdir(parents=True, exist_ok=True)
    cfg["counts"] = {s: len(text[s]) for s in SPLITS}
    write_json(cfg_path, cfg)

    rows = []
    jobs = [(f, s) for f in args.fusion for s in args.seeds]
    for fname, seed in tqdm(jobs, desc="mosi-bert runs"):
        run_dir = out / "runs" / fname / f"seed{seed}"
        seed_everything(seed)
        bert, _ = load_bert(args.bert)
        model = CrossModalBert(bert, freeze_embeddings=not args.train_embeddings, audio_dim=audio_dim,
                               **head_options(fname, args))
        tcfg = TrainerConfig(
            max_epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
            select_metric="loss", select_mode="min", grad_clip=args.grad_clip, schedule="warmup_linear",
            warmup_fraction=args.warmup, seed=seed, device=args.device, desc=f"{fname} seed {seed}",
        )
        fingerprint = {k: v for k, v in cfg.items() if k not in ("seeds", "fusion", "out", "device")}
        fingerprint.update(fusion=fname, seed=seed)
        trainer = MinibatchTrainer(model, bert_step_fn(args.lambda_jac), metric_fn, tcfg, out_dir=run_dir,
                                   fingerprint=fingerprint)
        # the reference optimiser groups (head at head_lr; biases and BERT LayerNorms without weight decay)
        trainer.optimizer = torch.optim.AdamW(
            cmbert_param_groups(trainer.model, args.lr, args.head_lr, args.weight_decay), lr=args.lr
        )
        result = trainer.fit(splits["train"], splits["dev"], splits["test"], resume=args.resume)
        write_json(run_dir / "result.json", result)
        row = {"fusion": fname, "seed": seed, "best_epoch": result["best_epoch"]}
        row.update({f"dev_{k}": v for k, v in result["valid"].items()})
        row.update({f"test_{k}": v for k, v in result["test"].items()})
        rows.append(row)
        write_csv(out / "per_seed.csv", rows)
        log.info("%s seed %d: test MAE %.3f, Acc-2 %.3f, corr %.3f", fname, seed, result["test"]["mae"],
                 result["test"]["acc2_ref"], result["test"]["corr"])

    summary = []
    for fname in args.fusion:
        mine = [r for r in rows if r["fusion"] == fname]
        test = summarize([{k[5:]: v for k, v in r.items() if k.startswith("test_")} for r in mine])
        summary.append({"fusion": fname, "seeds": [r["seed"] for r in mine], "test": test})
    write_json(out / "summary.json", summary)
    write_csv(out / "summary.csv", [
        {"fusion": s["fusion"], **{f"{k}_{w}": v[w] for k, v in s["test"].items() for w in ("mean", "std")}}
        for s in summary
    ])
    header = ["fusion"] + [m for m, _, _ in TABLE_METRICS]
    table = [[s["fusion"]] + [f"{s['test'][m]['mean'] * sc:.{d}f} +- {s['test'][m]['std'] * sc:.{d}f}"
                              for m, sc, d in TABLE_METRICS] for s in summary]
    (out / "summary.md").write_text(markdown_table(header, table) + "\n")
    return 0
