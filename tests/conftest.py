import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


#: DEQFUSION_REQUIRE_DATA=1 (set by .ci/run, which has the data) turns a missing data folder from a skip into a
#: failure, so that a broken CI set-up cannot pass by skipping
REQUIRE_DATA = os.environ.get("DEQFUSION_REQUIRE_DATA", "") == "1"


def _data_dir() -> Path:
    env = os.environ.get("DEQFUSION_DATA_DIR")
    return Path(env).resolve() if env else (REPO.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The folder holding the real data copies (rosmap/, cmu-mosi-bclstm/, ...).

    Set by DEQFUSION_DATA_DIR (CI points it at ../shared/data); defaults to ../shared/data beside the repo. A test
    using it is marked ``realdata``; it skips, naming the folder, when the folder is missing, and fails instead
    under DEQFUSION_REQUIRE_DATA=1.
    """
    d = _data_dir()
    if not d.is_dir():
        message = (f"real data folder not found: {d} (set DEQFUSION_DATA_DIR to the folder holding rosmap/, "
                   "cmu-mosi-bclstm/, ...)")
        if REQUIRE_DATA:
            pytest.fail(message + "; DEQFUSION_REQUIRE_DATA=1 requires it")
        pytest.skip(message)
    return d


def pytest_collection_modifyitems(config, items):
    """``realdata``: the test reads the real data files (it uses ``shared_data_dir``, directly or through another
    fixture); ``e2e``: the test runs a command end to end (tests/commands/)."""
    commands = REPO / "tests" / "commands"
    for item in items:
        if "shared_data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realdata)
        if commands in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _torch_threads():
    # tests use small tensors: one intra-op thread avoids OpenMP spin-waiting, which made small-op tests over
    # 10x slower whenever another process shared the two cores
    torch.set_num_threads(1)
    yield
