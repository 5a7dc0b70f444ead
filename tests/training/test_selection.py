import math

from deqfusion.training.selection import improves, selection_direction, selection_mode


def test_selection_direction():
    assert selection_direction("ce") == -1 and selection_direction("val_loss") == -1
    assert selection_direction("acc") == 1 and selection_direction("auc") == 1
    assert selection_mode("ce") == "min" and selection_mode("acc") == "max" and selection_mode("acc", "min") == "min"


def test_improves():
    assert improves(1.0, None, None, None, "min") and not improves(math.nan, None, None, None, "min")
    assert improves(0.5, None, 1.0, None, "min") and not improves(1.5, None, 1.0, None, "min")
    assert improves(1.5, None, 1.0, None, "max") and not improves(1.05, None, 1.0, None, "max", min_delta=0.1)
    # an exact tie is broken by the tie-break score, in its own direction
    assert improves(1.0, 0.9, 1.0, 0.8, "min", tie_key="acc") and not improves(1.0, 0.9, 1.0, 0.8, "min")
