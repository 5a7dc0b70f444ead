import math

import pytest

from deqfusion.training.config import TrainConfig


def test_config_checks():
    with pytest.raises(ValueError, match="select_mode"):
        TrainConfig(select_mode="best")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="batch sizes"):
        TrainConfig(batch_size=0)
    assert math.isclose(TrainConfig().lr, 1e-3) and TrainConfig().batch_size is None
