import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    env = os.environ.get("DEQFUSION_DATA_DIR")
    return Path(env).resolve() if env else (REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The folder holding the real data copies (rosmap/, cmu-mosi-bclstm/, ...).

    Set by DEQFUSION_DATA_DIR (CI points it at ../shared/data); defaults to ../shared/data beside the repo.
    Fails (not skips) when it is missing, so that a broken CI set-up cannot pass silently.
    """
    d = _data_dir()
    if not d.is_dir():
        pytest.fail(f"real data folder not found: {d} (set DEQFUSION_DATA_DIR)")
    return d


@pytest.fixture(autouse=True)
def _torch_threads():
    # tests use small tensors: one intra-op thread avoids OpenMP spin-waiting, which made small-op tests over
    # 10x slower whenever another process shared the two cores
    torch.set_num_threads(1)
    yield
