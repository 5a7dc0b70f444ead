"""Generated MM-IMDB files of the real layout (300 text + 4096 image features, 23 labels) for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deqfusion.data.mmimdb import IMAGE_DIM, NUM_LABELS, TEXT_DIM, write_mmimdb_file


def make_arrays(n_rows: int, seed: int = 0, text_dim: int = TEXT_DIM, image_dim: int = IMAGE_DIM,
                num_labels: int = NUM_LABELS, mark_rows: bool = True):
    """Learnable random data: each genre is a thresholded linear function of both modalities.

    With ``mark_rows`` the first text feature holds the row index, so tests can tell which rows were read.
    """
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(n_rows, text_dim)).astype(np.float32)
    image = np.abs(rng.normal(size=(n_rows, image_dim))).astype(np.float32)  # VGG features are >= 0
    wt = rng.normal(size=(text_dim, num_labels)) / np.sqrt(text_dim)
    wi = rng.normal(size=(image_dim, num_labels)) / np.sqrt(image_dim)
    score = text @ wt + (image - image.mean(0)) @ wi
    genres = (score > np.quantile(score, 0.7, axis=0)).astype(np.int8)
    if mark_rows:
        text[:, 0] = np.arange(n_rows, dtype=np.float32)
    return text, image, genres


def write_file(path: Path, n_rows: int = 120, seed: int = 0, mark_rows: bool = True, **kwargs) -> Path:
    text, image, genres = make_arrays(n_rows, seed, mark_rows=mark_rows)
    return write_mmimdb_file(path, text, image, genres, **kwargs)
