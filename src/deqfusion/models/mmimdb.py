"""MM-IMDB models: MaxOut MLP encoders of plot text and poster features, a fusion module, a linear head.

``build_mmimdb_model(name)`` gives the same model around any registered fusion (``deq``, ``unrolled``,
``concat`` = late fusion, ``sum``, ``tensor``, ``lowrank``, ``mi_matrix``, ...) and, for ``"early"``, the
early fusion baseline that concatenates the raw features and encodes them with one MaxOut MLP. Every model is
called as ``logits, info = model(text, image, mask=None)``; ``info.jac_loss`` is zero except for DEQ fusion.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..deq.result import zero_loss
from ..fusion.info import FusionInfo
from ..fusion.registry import available_fusions, fusion_label, make_fusion
from .maxout import MaxoutMLP

__all__ = ["MMIMDBModel", "EarlyFusionModel", "build_mmimdb_model", "mmimdb_model_names", "EARLY"]

EARLY = "early"
MODALITIES = ("text", "image")

def mmimdb_model_names() -> list[str]:
    """``"early"`` and every registered fusion name."""
    return [EARLY] + available_fusions()


class MMIMDBModel(nn.Module):
    """``text -> MaxoutMLP``, ``image -> MaxoutMLP``, fusion of the two encodings, ``Linear(hidden, labels)``.

    Args:
        fusion: a registered fusion name, a :class:`~deqfusion.fusion.registry.FusionFactory` (a name with
            options) or a built fusion module (see :func:`~deqfusion.fusion.registry.make_fusion`); it fuses
            ``in_dims = [text_hidden[-1], image_hidden[-1]]`` into ``out_dim = hidden``, modalities ``("text",
            "image")``.
        text_dim, image_dim, num_labels: data sizes (300, 4096, 23).
        hidden: fused width (512).
        text_hidden, image_hidden: encoder layer sizes (default ``[hidden, hidden]`` and
            ``[2 * hidden, hidden]``, i.e. 300 -> 512 -> 512 and 4096 -> 1024 -> 512).
        dropout: encoder dropout (0.3).
    """

    def __init__(self, fusion="deq", text_dim: int = 300, image_dim: int = 4096, num_labels: int = 23,
                 hidden: int = 512, text_hidden: Sequence[int] | None = None,
                 image_hidden: Sequence[int] | None = None, dropout: float = 0.3):
        super().__init__()
        text_hidden = list(text_hidden) if text_hidden is not None else [hidden, hidden]
        image_hidden = list(image_hidden) if image_hidden is not None else [2 * hidden, hidden]
        self.text_encoder = MaxoutMLP(text_dim, text_hidden, dropout=dropout)
        self.image_encoder = MaxoutMLP(image_dim, image_hidden, dropout=dropout)
        self.fusion = make_fusion(fusion, [text_hidden[-1], image_hidden[-1]], hidden, names=list(MODALITIES))
        self.head = nn.Linear(hidden, num_labels)
        self.fusion_name = fusion_label(fusion)

    def forward(self, text: Tensor, image: Tensor, mask: Tensor | None = None) -> tuple[Tensor, FusionInfo]:
        fused, info = self.fusion([self.text_encoder(text), self.image_encoder(image)], mask=mask)
        return self.head(fused), info


class EarlyFusionModel(nn.Module):
    """Early fusion: ``concat(text, image)`` raw features -> MaxoutMLP -> ``Linear(hidden, labels)``.

    Absent modalities (``mask[:, i]`` False) are zero-imputed before concatenation. The encoder has layer
    sizes ``hidden_dims`` (default ``[hidden, hidden]``, i.e. 4396 -> 512 -> 512).
    """

    def __init__(self, text_dim: int = 300, image_dim: int = 4096, num_labels: int = 23, hidden: int = 512,
                 hidden_dims: Sequence[int] | None = None, dropout: float = 0.3):
        super().__init__()
        hidden_dims = list(hidden_dims) if hidden_dims is not None else [hidden, hidden]
        self.text_dim, self.image_dim = int(text_dim), int(image_dim)
        self.encoder = MaxoutMLP(text_dim + image_dim, hidden_dims, dropout=dropout)
        self.head = nn.Linear(hidden_dims[-1], num_labels)
        self.fusion_name = EARLY

    def forward(self, text: Tensor, image: Tensor, mask: Tensor | None = None) -> tuple[Tensor, FusionInfo]:
        if text.dim() != 2 or image.dim() != 2 or text.shape[0] != image.shape[0]:
            raise ValueError(
                f"text and image must be (batch, features) with one batch size, got {tuple(text.shape)} and "
                f"{tuple(image.shape)}"
            )
        if mask is not None:
            mask = mask.to(device=text.device, dtype=text.dtype)
            text, image = text * mask[:, :1], image * mask[:, 1:2]
        logits = self.head(self.encoder(torch.cat([text, image], dim=1)))
        return logits, FusionInfo(jac_loss=zero_loss(logits))


def build_mmimdb_model(fusion, *, text_dim: int = 300, image_dim: int = 4096, num_labels: int = 23,
                       hidden: int = 512, dropout: float = 0.3, **encoder_sizes) -> nn.Module:
    """The MM-IMDB model for ``fusion``: ``"early"``, or a fusion for :class:`MMIMDBModel` (a registered name, a
    :class:`~deqfusion.fusion.registry.FusionFactory` or a built module).

    ``encoder_sizes`` are ``text_hidden``/``image_hidden`` (fusion models) or ``hidden_dims`` (early fusion).
    Raises ``ValueError`` for an unknown name.
    """
    if isinstance(fusion, str) and fusion == EARLY:
        return EarlyFusionModel(text_dim, image_dim, num_labels, hidden, dropout=dropout, **encoder_sizes)
    if isinstance(fusion, str) and fusion not in available_fusions():
        raise ValueError(f"unknown fusion {fusion!r}; choose one of {mmimdb_model_names()}")
    return MMIMDBModel(fusion, text_dim, image_dim, num_labels, hidden, dropout=dropout, **encoder_sizes)
