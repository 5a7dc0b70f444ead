"""The multi-omics classifier: MM-Dynamics backbone, a fusion module chosen by name, and the reference loss.

Per modality ``v`` (SPEC section 2, BRCA/ROSMAP):

- feature informativeness ``FI_v = sigmoid(Linear_{d_v -> d_v}(x_v))``;
- encoder ``h_v = Dropout(ReLU(Linear_{d_v -> H}(x_v * FI_v)))``;
- a per-modality classifier ``Linear_{H -> C}`` and a confidence ``Linear_{H -> 1}`` (no sigmoid);
- the modality feature passed to the fusion is ``h_v * confidence_v``.

The features are fused by any registered fusion (``build_fusion(name, in_dims=[H] * V, out_dim=H)``) and
classified by ``Linear_{H -> C}``. Backbone linears use Xavier-normal weights and zero biases; the fusion
module keeps its own initialisation.

The fusion is any registered name, built with the options given (the omics experiment's presets live in
:mod:`deqfusion.experiments.omics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import fusion as _fusions  # noqa: F401  (registers the fusions)
from ..fusion.info import FusionInfo
from ..fusion.registry import fusion_label, make_fusion
from ..metrics.classification import classification_metrics

__all__ = ["OmicsOutput", "OmicsClassifier", "omics_loss", "omics_objective"]

@dataclass
class OmicsOutput:
    """Everything the loss and the metrics need from one forward pass.

    Attributes:
        logits: ``(B, C)`` logits of the fused classifier.
        modality_logits: per modality ``(B, C)`` logits of its own classifier.
        confidences: per modality ``(B, 1)`` confidence (unbounded, as in the reference).
        feature_info: per modality ``(B, d_v)`` feature-informativeness gates in (0, 1).
        info: the fusion module's :class:`FusionInfo`.
    """

    logits: Tensor
    modality_logits: list[Tensor]
    confidences: list[Tensor]
    feature_info: list[Tensor]
    info: FusionInfo

    def probs(self) -> Tensor:
        return torch.softmax(self.logits, dim=1)


class OmicsClassifier(nn.Module):
    """MM-Dynamics multi-omics classifier with a replaceable fusion module.

    Args:
        in_dims: feature count of each omics modality.
        num_classes: number of classes C.
        hidden: encoder width H, also the fusion width (the reference: 500 for BRCA, 300 for ROSMAP).
        fusion: a registered fusion name, a :class:`~deqfusion.fusion.registry.FusionFactory` (a name with options) or a
            built fusion module (see :func:`~deqfusion.fusion.registry.make_fusion`).
        dropout: dropout after each modality encoder (reference 0.5).
        names: optional modality names (passed to the fusion).
        feature_norm: ``"none"`` (the reference: the fusion gets ``h_v * confidence_v``) or ``"layer"``
            (``LayerNorm(h_v) * confidence_v``: the same per-sample confidence weighting, on features of unit
            scale; the DEQ's injections are otherwise tiny next to its GroupNorm-ed states).
        modality_dropout: in training, hide each modality of each sample from the fusion with this probability
            (random modality drop-out, for robustness to missing modalities; a sample always keeps at least one).
            The per-modality heads and loss terms still see the modality.
    """

    def __init__(self, in_dims: Sequence[int], num_classes: int, hidden: int = 500, fusion="deq", dropout: float = 0.5,
                 names: Sequence[str] | None = None, feature_norm: str = "none", modality_dropout: float = 0.0):
        super().__init__()
        if not 0.0 <= modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must lie in [0, 1), got {modality_dropout}")
        self.modality_dropout = float(modality_dropout)
        if feature_norm not in ("none", "layer"):
            raise ValueError(f"feature_norm must be 'none' or 'layer', got {feature_norm!r}")
        in_dims = [int(d) for d in in_dims]
        if len(in_dims) < 2:
            raise ValueError(f"need at least 2 modalities, got in_dims={in_dims}")
        if num_classes < 2:
            raise ValueError(f"need at least 2 classes, got {num_classes}")
        self.in_dims = in_dims
        self.num_classes = int(num_classes)
        self.hidden = int(hidden)
        self.fusion_name = fusion_label(fusion)
        self.informativeness = nn.ModuleList(nn.Linear(d, d) for d in in_dims)
        self.encoders = nn.ModuleList(nn.Linear(d, hidden) for d in in_dims)
        self.modality_classifiers = nn.ModuleList(nn.Linear(hidden, num_classes) for _ in in_dims)
        self.confidence = nn.ModuleList(nn.Linear(hidden, 1) for _ in in_dims)
        self.dropout = nn.Dropout(dropout)
        self.feature_norm = feature_norm
        self.feature_norms = (nn.ModuleList(nn.LayerNorm(hidden) for _ in in_dims) if feature_norm == "layer"
                              else None)
        self.classifier = nn.Linear(hidden, num_classes)
        for mod in [*self.informativeness, *self.encoders, *self.modality_classifiers, *self.confidence,
                    self.classifier]:
            nn.init.xavier_normal_(mod.weight)
            nn.init.zeros_(mod.bias)
        self.fusion = make_fusion(fusion, [hidden] * len(in_dims), hidden, names=names)

    def forward(self, xs: Sequence[Tensor | None], mask: Tensor | None = None) -> OmicsOutput:
        """``xs``: one ``(B, d_v)`` tensor per modality, ``None`` for a modality absent from the whole batch;
        ``mask``: optional ``(B, V)`` bool presence per sample. Absent modalities pass no encoder and give no
        per-modality outputs (``None`` in :class:`OmicsOutput`); the fusion leaves them out (DEQ) or imputes
        zeros (baselines)."""
        if len(xs) != len(self.in_dims):
            raise ValueError(f"expected {len(self.in_dims)} modalities, got {len(xs)}")
        feats, logits_v, confs, fis = [], [], [], []
        for v, x in enumerate(xs):
            if x is None:
                for lst in (feats, logits_v, confs, fis):
                    lst.append(None)
                continue
            if x.dim() != 2 or x.shape[1] != self.in_dims[v]:
                raise ValueError(
                    f"modality {v} should have shape (B, {self.in_dims[v]}), got {tuple(x.shape)}"
                )
            fi = torch.sigmoid(self.informativeness[v](x))
            h = self.dropout(F.relu(self.encoders[v](x * fi)))
            logit = self.modality_classifiers[v](h)
            conf = self.confidence[v](h)
            feats.append((h if self.feature_norms is None else self.feature_norms[v](h)) * conf)
            logits_v.append(logit)
            confs.append(conf)
            fis.append(fi)
        if self.training and self.modality_dropout > 0:
            mask = self._drop_modalities(feats, mask)
        fused, info = self.fusion(feats, mask=mask)
        return OmicsOutput(self.classifier(fused), logits_v, confs, fis, info)


    def _drop_modalities(self, feats: list[Tensor | None], mask: Tensor | None) -> Tensor:
        ref = next(f for f in feats if f is not None)
        present = torch.tensor([f is not None for f in feats], device=ref.device).expand(ref.shape[0], -1)
        if mask is not None:
            present = present & mask.to(device=ref.device, dtype=torch.bool)
        kept = present & (torch.rand(present.shape, device=ref.device) >= self.modality_dropout)
        empty = ~kept.any(1)
        return torch.where(empty[:, None], present, kept)


def omics_loss(out: OmicsOutput, y: Tensor, lambda_jac: float = 20.0,
               growth: float = 1.5) -> tuple[Tensor, dict]:
    """The reference's training loss.

    ``L = CE(logits, y)``; then for each modality in turn ``L <- growth * L + mean(FI_v)`` and
    ``L <- L + MSE(confidence_v, softmax(logits_v)[y]) + CE(logits_v, y)``; finally ``L + lambda_jac * R``
    with ``R`` the fusion's Jacobian regulariser (zero for fusions without one, and outside training).

    Returns the loss and a dict of its detached parts (floats) for logging.
    """
    ce = F.cross_entropy(out.logits, y)
    loss = ce
    conf_total = out.logits.new_zeros(())
    for fi, logit, conf in zip(out.feature_info, out.modality_logits, out.confidences, strict=True):
        if logit is None:  # a modality absent from the batch has no loss terms
            continue
        loss = growth * loss + fi.mean()
        p_true = torch.softmax(logit, dim=1).gather(1, y.unsqueeze(1)).squeeze(1)
        conf_loss = F.mse_loss(conf.squeeze(1), p_true) + F.cross_entropy(logit, y)
        loss = loss + conf_loss
        conf_total = conf_total + conf_loss.detach()
    jac = out.info.jac_loss
    total = loss + lambda_jac * jac
    parts = {"loss": float(total.detach()), "ce": float(ce.detach()), "confidence": float(conf_total),
             "jac": float(jac.detach())}
    return total, parts


def omics_objective(lambda_jac: float, num_classes: int):
    """``(loss_fn, probs_fn, metrics_fn)`` of the full-batch trainer for an :class:`OmicsClassifier`:
    :func:`omics_loss` with ``lambda_jac``, the fused class probabilities, and the classification metrics."""

    def loss_fn(out: OmicsOutput, y: Tensor) -> tuple[Tensor, dict]:
        return omics_loss(out, y, lambda_jac=lambda_jac)

    def probs_fn(out: OmicsOutput) -> Tensor:
        return out.probs()

    def metrics_fn(y: Tensor, p: Tensor) -> dict:
        return classification_metrics(y, p, num_classes)

    return loss_fn, probs_fn, metrics_fn
