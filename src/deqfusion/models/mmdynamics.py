"""MM-Dynamics (Han et al., "Multimodal Dynamics: Dynamical Fusion for Trustworthy Multimodal Classification",
CVPR 2022) as its authors define and train it, and the same model with its concatenation replaced by a fusion
module (the DEQ fusion paper's BRCA/ROSMAP model).

Per modality ``v`` with input ``x_v`` (``B x d_v``):

- feature informativeness ``FI_v = sigmoid(W^I_v x_v + b^I_v)`` (``d_v -> d_v``);
- encoder ``h_v = Dropout(ReLU(W^E_v (x_v * FI_v) + b^E_v))`` (``d_v -> H``);
- a modality classifier ``l_v = W^C_v h_v + b^C_v`` (``H -> C``) and a confidence ``c_v = W^T_v h_v + b^T_v``
  (``H -> 1``, no squashing; trained towards the softmax probability of the true class);
- the modality feature ``e_v = h_v * c_v``.

``fusion="concat"`` (MM-Dynamics itself) classifies the concatenation ``[e_1, ..., e_V]`` (``V*H`` features) with
one linear layer. Any registered fusion name (e.g. ``"deq"``) instead fuses the ``e_v`` into one ``H``-wide
vector, classified by a linear layer ``H -> C``.

Every linear layer is created as ``nn.Linear`` (so its default initialisation consumes the random stream as
torch's does) and immediately re-initialised Xavier-normal with zero bias, and the layers are created in the
published model's order: all informativeness layers, all confidence layers, all modality classifiers, all
encoders, then the fusion and the fused classifier. With the same seed the concat model therefore starts from
the same weights as the published one.

The loss (:func:`mmdynamics_loss`): ``L = CE(fused logits)``; then for each modality in turn
``L <- growth * L + mean(FI_v) + MSE(c_v, softmax(l_v)[y]) + CE(l_v)``; plus ``lambda_jac * R`` for a fusion with a
Jacobian regulariser ``R``. MM-Dynamics adds the terms (``growth = 1``); the DEQ fusion paper's copy multiplies the
running loss by 1.5 per modality.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import fusion as _fusions  # noqa: F401  (registers the fusions)
from ..deq.result import zero_loss
from ..fusion.info import FusionInfo
from ..fusion.registry import fusion_label, make_fusion
from ..metrics.classification import classification_metrics
from .omics import OmicsOutput, omics_loss

__all__ = ["CONCAT", "MMDynamicsClassifier", "mmdynamics_loss", "mmdynamics_objective"]

#: the fusion name that gives MM-Dynamics' own concatenation classifier
CONCAT = "concat"


def _linear(d_in: int, d_out: int) -> nn.Linear:
    layer = nn.Linear(d_in, d_out)
    nn.init.xavier_normal_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class MMDynamicsClassifier(nn.Module):
    """MM-Dynamics, with its concatenation classifier or a fusion module.

    Args:
        in_dims: feature count ``d_v`` of each modality (at least 2).
        num_classes: number of classes ``C`` (at least 2).
        hidden: encoder width ``H`` (MM-Dynamics: 1000; the DEQ paper: 300 for ROSMAP, 500 for BRCA).
        dropout: dropout after each encoder (0.5 in both papers).
        fusion: ``"concat"`` (MM-Dynamics' concatenation classifier) or a fusion: a registered name, a
            :class:`~deqfusion.fusion.registry.FusionFactory` (a name with options) or a built fusion module (see
            :func:`~deqfusion.fusion.registry.make_fusion`).
        names: optional modality names, passed to the fusion.
        modality_dropout: in training, hide each modality of each sample from the fusion with this probability
            (a sample keeps at least one); the concatenation sees a hidden modality's features as zeros. The
            modality heads and loss terms still see it.
    """

    def __init__(self, in_dims: Sequence[int], num_classes: int, hidden: int = 1000, dropout: float = 0.5,
                 fusion=CONCAT, names: Sequence[str] | None = None,
                 modality_dropout: float = 0.0):
        super().__init__()
        in_dims = [int(d) for d in in_dims]
        if len(in_dims) < 2:
            raise ValueError(f"need at least 2 modalities, got in_dims={in_dims}")
        if any(d < 1 for d in in_dims):
            raise ValueError(f"every modality needs at least one feature, got in_dims={in_dims}")
        if num_classes < 2:
            raise ValueError(f"need at least 2 classes, got {num_classes}")
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if not 0.0 <= modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must lie in [0, 1), got {modality_dropout}")
        self.in_dims, self.num_classes, self.hidden = in_dims, int(num_classes), int(hidden)
        self.dropout, self.modality_dropout = float(dropout), float(modality_dropout)
        self.fusion_name = fusion_label(fusion)
        views = range(len(in_dims))
        # creation order = the published model's (see the module docstring)
        self.informativeness = nn.ModuleList(_linear(in_dims[v], in_dims[v]) for v in views)
        self.confidence = nn.ModuleList(_linear(hidden, 1) for _ in views)
        self.modality_classifiers = nn.ModuleList(_linear(hidden, num_classes) for _ in views)
        self.encoders = nn.ModuleList(_linear(in_dims[v], hidden) for v in views)
        if isinstance(fusion, str) and fusion == CONCAT:
            self.fusion = None
            self.classifier = _linear(len(in_dims) * hidden, num_classes)
        else:
            self.fusion = make_fusion(fusion, [hidden] * len(in_dims), hidden, names=names)
            self.classifier = _linear(hidden, num_classes)

    def forward(self, xs: Sequence[Tensor], mask: Tensor | None = None, **fusion_kwargs) -> OmicsOutput:
        """``xs``: one ``(B, d_v)`` tensor per modality; ``mask``: optional ``(B, V)`` bool presence per sample
        (an absent modality's feature is zero in the concatenation and left out by a DEQ fusion).
        ``fusion_kwargs`` go to the fusion module (e.g. ``sample_ids`` for a warm-started DEQ)."""
        if len(xs) != len(self.in_dims):
            raise ValueError(f"expected {len(self.in_dims)} modalities, got {len(xs)}")
        feats, logits_v, confs, fis = [], [], [], []
        for v, x in enumerate(xs):
            if x is None or x.dim() != 2 or x.shape[1] != self.in_dims[v]:
                got = None if x is None else tuple(x.shape)
                raise ValueError(f"modality {v} should have shape (B, {self.in_dims[v]}), got {got}")
            fi = torch.sigmoid(self.informativeness[v](x))
            h = F.dropout(F.relu(self.encoders[v](x * fi)), self.dropout, training=self.training)
            logit = self.modality_classifiers[v](h)
            conf = self.confidence[v](h)
            feats.append(h * conf)
            logits_v.append(logit)
            confs.append(conf)
            fis.append(fi)
        if mask is not None:
            mask = mask.to(device=feats[0].device, dtype=torch.bool)
            if mask.shape != (feats[0].shape[0], len(feats)):
                raise ValueError(f"mask should have shape {(feats[0].shape[0], len(feats))}, got "
                                 f"{tuple(mask.shape)}")
        if self.training and self.modality_dropout > 0:
            mask = self._drop_modalities(mask, feats[0])
        if self.fusion is None:
            if fusion_kwargs:
                raise TypeError("the concatenation classifier takes no fusion arguments, got "
                                f"{sorted(fusion_kwargs)}")
            if mask is not None:
                feats = [f * mask[:, v:v + 1].to(f.dtype) for v, f in enumerate(feats)]
            logits = self.classifier(torch.cat(feats, dim=1))
            info = FusionInfo(jac_loss=zero_loss(logits))
        else:
            fused, info = self.fusion(feats, mask=mask, **fusion_kwargs)
            logits = self.classifier(fused)
        return OmicsOutput(logits, logits_v, confs, fis, info)

    def _drop_modalities(self, mask: Tensor | None, ref: Tensor) -> Tensor:
        present = torch.ones(ref.shape[0], len(self.in_dims), dtype=torch.bool, device=ref.device)
        if mask is not None:
            present = present & mask
        kept = present & (torch.rand(present.shape, device=ref.device) >= self.modality_dropout)
        return torch.where(kept.any(1, keepdim=True), kept, present)


def mmdynamics_loss(out: OmicsOutput, y: Tensor, growth: float = 1.0,
                    lambda_jac: float = 0.0) -> tuple[Tensor, dict]:
    """The MM-Dynamics training loss (``growth = 1``: its authors' additive form; 1.5: the DEQ fusion paper's
    copy) plus ``lambda_jac`` times the fusion's Jacobian regulariser; returns ``(loss, parts)`` as
    :func:`deqfusion.models.omics.omics_loss` does."""
    if growth <= 0:
        raise ValueError(f"growth must be positive, got {growth}")
    return omics_loss(out, y, lambda_jac=lambda_jac, growth=growth)


def mmdynamics_objective(num_classes: int, growth: float = 1.0, lambda_jac: float = 0.0):
    """``(loss_fn, probs_fn, metrics_fn)`` of the full-batch trainer for an :class:`MMDynamicsClassifier`:
    :func:`mmdynamics_loss`, the fused class probabilities, and the classification metrics."""

    def loss_fn(out: OmicsOutput, y: Tensor) -> tuple[Tensor, dict]:
        return mmdynamics_loss(out, y, growth=growth, lambda_jac=lambda_jac)

    def probs_fn(out: OmicsOutput) -> Tensor:
        return out.probs()

    def metrics_fn(y: Tensor, p: Tensor) -> dict:
        return classification_metrics(y, p, num_classes)

    return loss_fn, probs_fn, metrics_fn
