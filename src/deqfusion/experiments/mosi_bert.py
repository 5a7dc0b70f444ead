"""The Cross-Modal BERT setting of CMU-MOSI (text + word-aligned audio), with DEQ fusion of the attention maps.

Per fusion and seed: fine-tune BERT with the CM-BERT head (the reference's optimiser groups: the head at its own
learning rate, biases and LayerNorms without weight decay; linear warm-up then linear decay), select the epoch
with the lowest dev loss and score that model once on the test split. The DEQ settings default to the paper's
(105 forward / 106 backward iterations to 1e-4) and are recorded in the settings as such.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.mosi import SPLITS, check_alignment, load_mosi_audio, load_mosi_text, resolve_text_root
from ..errors import UserError
from ..fusion.registry import FusionFactory
from ..training.config import TrainConfig
from ..training.health import regression_health
from ..training.seed import seed_everything
from . import minibatch
from . import mosi_objective as mr
from .runner import Column, Experiment, Run, Table, register_experiment

FUSIONS = ("deq", "unrolled", "cmbert")
#: metrics shown in summary.md, in order (name, scale, digits)
TABLE_METRICS = [("acc7", 100, 1), ("acc2_ref", 100, 1), ("f1_ref", 100, 1), ("acc2_neg_pos", 100, 1),
                 ("f1_neg_pos", 100, 1), ("acc2_neg_nonneg", 100, 1), ("mae", 1, 3), ("corr", 1, 3)]
SETTINGS = ("bert", "epochs", "batch_size", "lr", "head_lr", "weight_decay", "warmup", "grad_clip", "lambda_jac",
            "max_seq_length", "text_scale", "train_embeddings", "f_max_iter", "f_tol", "b_mode", "b_max_iter",
            "b_tol")


def head_options(fusion: str, opts) -> dict:
    """The CM-BERT head's options for ``fusion`` (``opts``: the settings, as attributes or a dict)."""
    get = opts.get if isinstance(opts, dict) else lambda k: getattr(opts, k)
    out: dict = {"seq_len": get("max_seq_length"), "text_scale": get("text_scale"), "fusion": fusion}
    if fusion == "deq":  # the paper's setting with the command's solver options
        from ..models.cmbert import PAPER_DEQ

        out["fusion"] = FusionFactory("deq", **PAPER_DEQ,
                                      **{k: get(k) for k in ("f_max_iter", "f_tol", "b_mode", "b_max_iter", "b_tol")})
    return out


def configure(args) -> tuple[dict, list[dict]]:
    """``(settings, variants)`` from the command's options."""
    if not args.text_dir:
        raise UserError("no text folder: pass --text-dir or set DEQFUSION_DATA_DIR")
    bad = [f for f in args.fusion if f not in FUSIONS]
    if bad:
        raise UserError(f"unknown fusion(s) {bad} for the attention maps; choose deq, unrolled or cmbert")
    settings = {k: getattr(args, k) for k in SETTINGS}
    settings["deq_settings"] = "the paper's (105 / 106 iterations to 1e-4) unless given"
    settings["sources"] = {"text_dir": str(resolve_text_root(args.text_dir).resolve()),
                           "audio": str(Path(args.audio).resolve()), "device": args.device}
    variants = [{"label": f, "fusion": f} for f in dict.fromkeys(args.fusion)]
    return settings, variants


def load(cfg: dict) -> dict:
    from ..models.cmbert import load_bert, tokenize_texts

    src = cfg["sources"]
    text = load_mosi_text(src["text_dir"])
    audio = load_mosi_audio(src["audio"], seq_len=cfg["max_seq_length"], feat_dim=None)
    check_alignment(text, audio, src["audio"])
    _, tokenizer = load_bert(cfg["bert"])
    splits = {}
    for s in SPLITS:
        d = tokenize_texts(tokenizer, text[s].texts, cfg["max_seq_length"])
        d["audio"] = torch.from_numpy(audio[s])
        d["labels"] = torch.from_numpy(text[s].labels)
        splits[s] = d
    return {"splits": splits, "labels": {s: text[s].labels for s in SPLITS},
            "audio_dim": int(audio["train"].shape[2])}


def describe(data: dict) -> dict:
    return {"counts": {s: int(len(v)) for s, v in data["labels"].items()}, "audio_dim": data["audio_dim"]}


def train(run: Run) -> dict:
    from ..models.cmbert import CrossModalBert, cmbert_param_groups, load_bert

    cfg = run.settings
    seed_everything(run.seed)
    bert, _ = load_bert(cfg["bert"])
    model = CrossModalBert(bert, freeze_embeddings=not cfg["train_embeddings"], audio_dim=run.data["audio_dim"],
                           **head_options(run.variant["fusion"], cfg))
    tcfg = TrainConfig(
        epochs=cfg["epochs"], batch_size=cfg["batch_size"], optimizer="adamw", lr=cfg["lr"],
        weight_decay=cfg["weight_decay"], select="loss", select_mode="min", clip_norm=cfg["grad_clip"],
        schedule="warmup_linear", warmup_fraction=cfg["warmup"], shuffle_seed=run.seed,
        device=cfg["sources"]["device"], desc=f"{run.label} seed {run.seed}",
    )
    # the reference optimiser groups (head at head_lr; biases and BERT LayerNorms without weight decay)
    groups = cmbert_param_groups(model, cfg["lr"], cfg["head_lr"], cfg["weight_decay"])
    trainer = minibatch.trainer_for(run, model, mr.bert_step_fn(cfg["lambda_jac"]), mr.metric_fn, tcfg, groups)
    result = minibatch.fit(run, trainer, run.data["splits"], valid="dev")
    result["health"] = regression_health(result["val"]["mae"], run.data["labels"]["dev"],
                                         run.data["labels"]["train"])
    return result


def tables(config: dict) -> list[Table]:
    return [Table("CMU-MOSI, Cross-Modal BERT: test metrics (epoch selected on dev loss)",
                  [Column(f"test_{k}", k, scale, digits) for k, scale, digits in TABLE_METRICS])]


MOSI_BERT = register_experiment(Experiment(name="mosi_bert", load=load, train=train, tables=tables,
                                           describe=describe))
