"""MaxOut MLP encoders (Goodfellow et al., 2013), as used on MM-IMDB features by the GMU/MultiBench setup."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["Maxout", "MaxoutMLP"]


class Maxout(nn.Module):
    """``max_k (W_k x + b_k)`` over ``pool`` linear pieces: ``(B, in_dim) -> (B, out_dim)``."""

    def __init__(self, in_dim: int, out_dim: int, pool: int = 2):
        super().__init__()
        if pool < 1:
            raise ValueError(f"maxout pool size must be >= 1, got {pool}")
        self.out_dim, self.pool = int(out_dim), int(pool)
        self.linear = nn.Linear(in_dim, self.out_dim * self.pool)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).view(x.shape[0], self.out_dim, self.pool).amax(dim=2)


class MaxoutMLP(nn.Module):
    """``BN(in) -> [Maxout -> BN -> Dropout] per hidden size``, optionally followed by a Linear layer.

    ``MaxoutMLP(300, [512, 512])`` is the MM-IMDB text encoder (300 -> 512 -> 512) and
    ``MaxoutMLP(4096, [1024, 512])`` the image encoder.

    Args:
        in_dim: input features.
        hidden_dims: output size of each maxout layer; the last one is the encoder's output size.
        pool: linear pieces per maxout unit (2).
        dropout: dropout after each maxout layer (0.3).
        out_dim: if given, a final Linear ``hidden_dims[-1] -> out_dim`` (a classifier head).
    """

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], pool: int = 2, dropout: float = 0.3,
                 out_dim: int | None = None):
        super().__init__()
        hidden_dims = [int(h) for h in hidden_dims]
        if not hidden_dims:
            raise ValueError("MaxoutMLP needs at least one hidden layer")
        layers: list[nn.Module] = [nn.BatchNorm1d(in_dim)]
        prev = int(in_dim)
        for h in hidden_dims:
            layers += [Maxout(prev, h, pool), nn.BatchNorm1d(h), nn.Dropout(dropout)]
            prev = h
        if out_dim is not None:
            layers.append(nn.Linear(prev, int(out_dim)))
            prev = int(out_dim)
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = int(in_dim), prev

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"MaxoutMLP expects (batch, {self.in_dim}) input, got {tuple(x.shape)}")
        return self.net(x)
