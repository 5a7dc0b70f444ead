"""Cross-Modal BERT (Yang et al., MM 2020) with DEQ fusion over its two attention maps, and the plain model.

Pipeline for a batch of ``B`` utterances tokenised to ``L`` (= 50) positions with word-aligned audio
``(B, L, a)`` (a = 5 COVAREP features):

1. BERT token states ``H`` (B, L, h) from a ``transformers`` BERT (a local folder or a model name).
2. ``T = Conv1x1_{h->30}(H)``, scaled by ``1 / sqrt(||T||)`` (see ``text_scale``);
   ``A = Conv1x1_{a->30}(audio)``.
3. Attention maps ``T_att = ReLU(T T^T)`` and ``A_att = ReLU(A A^T)``, both (B, L, L).
4. Fusion of the two maps into one (B, L, L) map:
   * ``"cmbert"`` (the plain CM-BERT): ``w_t T_att + w_a A_att + b`` with learnable scalars (init 1, 1, 0);
   * ``"deq"`` (the paper): :class:`deqfusion.DEQFusion` over the maps as (B, C = L, L) states, with the same
     weighted sum as its fused injection, GroupNorm(5) in the per-modality blocks and GroupNorm(1) in the
     fusion block (any fusion registered for (B, C, L) inputs can be named instead).
5. Masked softmax of the fused map over key positions (padding keys get no weight), attention dropout 0.3,
   ``F = att H + H``, Linear h->h, dropout, LayerNorm, the [CLS] row, dropout, Linear h->1.

The loss is ``0.5 (y_hat - y)^2`` (+ ``lambda_jac * info.jac_loss`` for DEQ); :func:`cmbert_param_groups`
reproduces the reference optimiser groups.

Reference quirk kept behind a flag: the reference divides ``T`` by the square root of the 2-norm of the
*whole batch* of projected text states, so a sample's prediction depends on the rest of its batch.
``text_scale="sample"`` (the default here) uses each sample's own norm; ``"batch"`` reproduces the reference.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from .. import fusion as _fusion  # noqa: F401  (registers the fusions)
from ..deq.result import zero_loss
from ..errors import UserError
from ..fusion.info import FusionInfo
from ..fusion.registry import FusionFactory, fusion_label, make_fusion

MAP_FUSIONS_BUILTIN = ("cmbert",)
TEXT_SCALES = ("sample", "batch", "none")


class WeightedMapSum(nn.Module):
    """The plain CM-BERT fusion: ``w_t T_att + w_a A_att + b`` with learnable scalars (init 1, 1, 0)."""

    def __init__(self, n: int = 2):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, maps: list[Tensor], mask=None) -> tuple[Tensor, FusionInfo]:
        out = sum(w * m for w, m in zip(self.weight, maps, strict=True)) + self.bias
        return out, FusionInfo(jac_loss=zero_loss(out))


#: the DEQ fusion options of the paper's CM-BERT setting (GroupNorm over 5 groups of the 50 map rows in the
#: per-modality blocks, one group in the fusion block), used when the head is given the name ``"deq"``
PAPER_DEQ = {"groups": 5, "fusion_groups": 1}


class CrossModalHead(nn.Module):
    """Steps 2-5 above: projections, attention maps, fusion, masked attention over ``H``, regression.

    Args:
        hidden_size: BERT width ``h``.
        audio_dim: audio features per position.
        seq_len: number of positions ``L`` (the fused maps are L x L).
        proj_dim: width of the text/audio projections (30 in the reference).
        fusion: ``"cmbert"`` (the reference's weighted sum of the maps) or a fusion accepting (B, C, L) inputs:
            a registered name, a :class:`~deqfusion.fusion.registry.FusionFactory` or a built module. The name
            ``"deq"`` alone is the paper's DEQ setting, :data:`PAPER_DEQ` (``groups=5, fusion_groups=1``).
        att_dropout, hidden_dropout: dropout on the attention weights and on the hidden states.
        text_scale: ``"sample"``, ``"batch"`` (reference) or ``"none"``.
    """

    def __init__(
        self,
        hidden_size: int,
        audio_dim: int = 5,
        seq_len: int = 50,
        proj_dim: int = 30,
        fusion="deq",
        att_dropout: float = 0.3,
        hidden_dropout: float = 0.1,
        text_scale: str = "sample",
    ):
        super().__init__()
        if text_scale not in TEXT_SCALES:
            raise ValueError(f"text_scale must be one of {TEXT_SCALES}, got {text_scale!r}")
        self.seq_len = int(seq_len)
        self.text_scale = text_scale
        self.fusion_name = fusion_label(fusion)
        self.proj_t = nn.Conv1d(hidden_size, proj_dim, kernel_size=1, bias=False)
        self.proj_a = nn.Conv1d(audio_dim, proj_dim, kernel_size=1, bias=False)
        if isinstance(fusion, str) and fusion == "cmbert":
            self.fusion = WeightedMapSum(2)
        else:
            if isinstance(fusion, str) and fusion == "deq":
                fusion = FusionFactory("deq", **PAPER_DEQ)
            self.fusion = make_fusion(fusion, [self.seq_len, self.seq_len], self.seq_len, names=["text", "audio"])
            if getattr(self.fusion, "feature_dims", 1) == 1:
                raise ValueError(
                    f"fusion {fusion!r} only takes (B, d) vectors; the attention maps are (B, L, L)"
                )
        self.att_dropout = nn.Dropout(att_dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(hidden_dropout)
        self.norm = nn.LayerNorm(hidden_size, eps=1e-12)
        self.out_dropout = nn.Dropout(hidden_dropout)
        self.classifier = nn.Linear(hidden_size, 1)

    def attention_maps(self, hidden: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        t = self.proj_t(hidden.transpose(1, 2)).transpose(1, 2)  # (B, L, p)
        if self.text_scale == "batch":
            t = t / t.detach().norm().clamp_min(1e-12).sqrt()
        elif self.text_scale == "sample":
            t = t / t.detach().flatten(1).norm(dim=1).clamp_min(1e-12).sqrt().view(-1, 1, 1)
        a = self.proj_a(audio.transpose(1, 2)).transpose(1, 2)
        return torch.relu(t @ t.transpose(1, 2)), torch.relu(a @ a.transpose(1, 2))

    def forward(self, hidden: Tensor, audio: Tensor, attention_mask: Tensor) -> tuple[Tensor, FusionInfo]:
        if hidden.shape[1] != self.seq_len or audio.shape[1] != self.seq_len:
            raise ValueError(
                f"token states have {hidden.shape[1]} positions and audio {audio.shape[1]}; both must be "
                f"{self.seq_len} (the fused attention maps are {self.seq_len} x {self.seq_len})"
            )
        t_att, a_att = self.attention_maps(hidden, audio)
        fused, info = self.fusion([t_att, a_att])
        keys = attention_mask[:, None, :].to(torch.bool)
        scores = fused.masked_fill(~keys, torch.finfo(fused.dtype).min)
        att = self.att_dropout(torch.softmax(scores, dim=-1))
        states = att @ hidden + hidden
        states = self.norm(self.dropout(self.dense(states)))
        cls = self.out_dropout(states[:, 0])
        return self.classifier(cls).squeeze(-1), info


class CrossModalBert(nn.Module):
    """BERT encoder + :class:`CrossModalHead`.

    ``forward(input_ids, attention_mask, audio, token_type_ids=None)`` returns ``(prediction (B,), info)``.
    Build it from a local folder or model name with :func:`build_cmbert`, or pass any ``transformers``
    BERT-like module (one whose output has ``last_hidden_state``).
    """

    def __init__(self, bert: nn.Module, freeze_embeddings: bool = True, **head_options):
        super().__init__()
        self.bert = bert
        hidden = int(bert.config.hidden_size)
        self.head = CrossModalHead(hidden, **head_options)
        if freeze_embeddings and hasattr(bert, "embeddings"):
            for p in bert.embeddings.parameters():
                p.requires_grad_(False)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, audio: Tensor,
                token_type_ids: Tensor | None = None) -> tuple[Tensor, FusionInfo]:
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return self.head(out.last_hidden_state, audio.to(out.last_hidden_state.dtype), attention_mask)


def load_bert(name_or_path: str | Path):
    """``(model, tokenizer)`` from a local folder or a model name (looked up by ``transformers``)."""
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UserError(
            "the Cross-Modal BERT setting needs transformers: pip install 'deqfusion[text]'"
        ) from exc
    p = Path(str(name_or_path)).expanduser()
    if str(name_or_path).startswith((".", "/", "~")) and not p.is_dir():
        raise UserError(f"BERT folder not found: {p}")
    try:
        tok = AutoTokenizer.from_pretrained(str(p) if p.is_dir() else str(name_or_path))
        bert = AutoModel.from_pretrained(str(p) if p.is_dir() else str(name_or_path), add_pooling_layer=False)
    except (OSError, ValueError) as exc:
        raise UserError(
            f"cannot load BERT {name_or_path!r}: {str(exc).splitlines()[0]} (give a folder holding "
            "config.json, the weights and the vocabulary, e.g. a copy of bert-base-uncased)"
        ) from None
    return bert, tok


def build_cmbert(name_or_path: str | Path, freeze_embeddings: bool = True, **head_options):
    """``(CrossModalBert, tokenizer)`` with the BERT loaded by :func:`load_bert`."""
    bert, tok = load_bert(name_or_path)
    return CrossModalBert(bert, freeze_embeddings=freeze_embeddings, **head_options), tok


def cmbert_param_groups(model: CrossModalBert, lr: float = 2e-5, head_lr: float = 1e-2,
                        weight_decay: float = 0.01) -> list[dict]:
    """The reference optimiser groups.

    * head weights (projections, fusion, dense, norm weights; not the final classifier): ``head_lr``, decayed;
    * every bias, and BERT's LayerNorm parameters: ``lr``, no decay;
    * the other BERT weights and the classifier weight: ``lr``, decayed.

    Frozen parameters are left out. Group names are in ``"name"``.
    """
    head, no_decay, decay = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        in_head = name.startswith("head.") and not name.startswith("head.classifier.")
        if name.endswith("bias") or (name.startswith("bert.") and "LayerNorm" in name):
            no_decay.append(p)
        elif in_head:
            head.append(p)
        else:
            decay.append(p)
    groups = [
        {"name": "decay", "params": decay, "lr": lr, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0},
        {"name": "head", "params": head, "lr": head_lr, "weight_decay": weight_decay},
    ]
    return [g for g in groups if g["params"]]


def warmup_linear(total_steps: int, warmup: float = 0.1):
    """LambdaLR factor: linear warm-up over ``warmup * total_steps`` steps, then linear decay to 0."""
    total = max(int(total_steps), 1)
    w = max(int(round(warmup * total)), 0)

    def factor(step: int) -> float:
        if w > 0 and step < w:
            return (step + 1) / w
        return max(0.0, (total - step) / max(total - w, 1))

    return factor


def tokenize_texts(tokenizer, texts, max_length: int = 50) -> dict[str, Tensor]:
    """``input_ids``, ``attention_mask`` and ``token_type_ids`` (long tensors, ``(n, max_length)``): each text
    as ``[CLS] tokens [SEP]``, truncated and padded to ``max_length`` (the reference's preprocessing)."""
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=int(max_length),
                    return_tensors="pt")
    out = {"input_ids": enc["input_ids"].long(), "attention_mask": enc["attention_mask"].long()}
    tt = enc.get("token_type_ids")
    out["token_type_ids"] = tt.long() if tt is not None else torch.zeros_like(out["input_ids"])
    return out
