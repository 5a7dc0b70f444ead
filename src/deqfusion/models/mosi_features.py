"""Utterance-level CMU-MOSI regression model: per-modality MLP encoders, a fusion by name, a regression head.

Any subset of the modalities can be used. With two or more, the encodings (all ``hidden`` wide) are fused by
the fusion registered under ``fusion`` (``deq``, ``unrolled``, ``concat``, ``tensor``, ``lowrank``, ...) and
the head regresses the fused vector; with one modality there is no fusion and the head reads the encoding.
Swapping the fusion changes nothing else in the model.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .. import fusion as _fusion  # noqa: F401  (registers the fusions)
from ..deq.result import zero_loss
from ..fusion.info import FusionInfo
from ..fusion.registry import fusion_label, make_fusion


class MLPEncoder(nn.Module):
    """``d -> hidden -> hidden`` with ReLU and dropout (and dropout on the input features)."""

    def __init__(self, in_dim: int, hidden: int, dropout: float = 0.2, input_dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(input_dropout),
            nn.Linear(in_dim, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MosiFeatureModel(nn.Module):
    """Encoders -> fusion -> regression head, predicting a sentiment score per utterance.

    Args:
        in_dims: modality name -> feature size, in the order the fusion receives them.
        fusion: a registered fusion name, a :class:`~deqfusion.fusion.registry.FusionFactory` (a name with options) or a
            built fusion module (see :func:`~deqfusion.fusion.registry.make_fusion`) (ignored with a single modality).
        hidden: encoder output width = fusion input and output width.
        dropout: dropout inside encoders and head.
        input_dropout: dropout on the raw features.

    ``forward(features)`` takes a dict name -> ``(B, d)`` tensor and returns ``(prediction (B,), info)``.
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        fusion="deq",
        hidden: int = 64,
        dropout: float = 0.2,
        input_dropout: float = 0.0,
    ):
        super().__init__()
        if not in_dims:
            raise ValueError("at least one modality is needed")
        self.modalities = [str(m) for m in in_dims]
        self.encoders = nn.ModuleDict(
            {m: MLPEncoder(int(d), hidden, dropout, input_dropout) for m, d in in_dims.items()}
        )
        if len(self.modalities) == 1:
            self.fusion_name = "none"
            self.fusion = None
        else:
            self.fusion_name = fusion_label(fusion)
            self.fusion = make_fusion(fusion, [hidden] * len(self.modalities), hidden, names=self.modalities)
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, features: Mapping[str, Tensor], mask: Tensor | None = None
                ) -> tuple[Tensor, FusionInfo]:
        missing = [m for m in self.modalities if m not in features]
        if missing:
            raise ValueError(f"missing modality input(s) {missing}; this model uses {self.modalities}")
        encoded = [self.encoders[m](features[m]) for m in self.modalities]
        if self.fusion is None:
            fused, info = encoded[0], FusionInfo(jac_loss=zero_loss(encoded[0]))
        else:
            fused, info = self.fusion(encoded, mask=mask)
        return self.head(fused).squeeze(-1), info

    def fusion_parameters(self) -> list[nn.Parameter]:
        return [] if self.fusion is None else list(self.fusion.parameters())

    @torch.no_grad()
    def predict(self, features: Mapping[str, Tensor]) -> Tensor:
        was = self.training
        self.eval()
        try:
            return self(features)[0]
        finally:
            self.train(was)
