"""Seeding and RNG state capture, for runs that repeat exactly and resume exactly."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (all devices); optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def rng_state() -> dict:
    """Every RNG state a training run depends on, as tensors/lists that ``torch.save`` stores safely."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state_to_tensors(np.random.get_state()),
        "python": _python_state_to_tensor(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(_tensors_to_numpy_state(state["numpy"]))
    random.setstate(_tensor_to_python_state(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# NumPy and Python RNG states hold strings/tuples; stored as plain tensors so that checkpoints load with
# ``weights_only=True``.
def _numpy_state_to_tensors(st) -> dict:
    _, keys, pos, has_gauss, cached = st
    return {
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _tensors_to_numpy_state(d: dict):
    keys = d["keys"].numpy().astype(np.uint32)
    return ("MT19937", keys, int(d["pos"]), int(d["has_gauss"]), float(d["cached"]))


def _python_state_to_tensor(st) -> dict:
    version, internal, gauss = st
    return {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss": float("nan") if gauss is None else float(gauss)}


def _tensor_to_python_state(d: dict):
    gauss = d["gauss"]
    gauss = None if gauss != gauss else gauss  # NaN marks None
    return (d["version"], tuple(int(v) for v in d["internal"].tolist()), gauss)
