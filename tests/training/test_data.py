import pytest
import torch

from deqfusion.training.data import iterate_batches, stratified_split


def test_stratified_split():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 3)
    fit_idx, val_idx = stratified_split(y, 0.2, seed=1)
    assert torch.equal(torch.cat([fit_idx, val_idx]).sort().values, torch.arange(83))
    assert torch.bincount(y[val_idx]).tolist() == [10, 6, 1]
    again = stratified_split(y, 0.2, seed=1)
    assert torch.equal(again[1], val_idx)
    assert not torch.equal(stratified_split(y, 0.2, seed=2)[1], val_idx)
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(y, 1.0, 0)



def test_iterate_batches_and_sizes():
    split = {"a": torch.arange(10), "b": torch.arange(10) * 2}
    batches = list(iterate_batches(split, 4))
    assert [len(b["a"]) for b in batches] == [4, 4, 2]
    assert list(iterate_batches(split, 4, drop_last=True))[-1]["a"].tolist() == [4, 5, 6, 7]
    order = torch.tensor([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    first = next(iterate_batches(split, 3, order))
    assert first["a"].tolist() == [9, 8, 7] and first["b"].tolist() == [18, 16, 14]
    with pytest.raises(ValueError, match="different numbers of samples"):
        list(iterate_batches({"a": torch.zeros(3), "b": torch.zeros(4)}, 2))
    # an absent modality (None) passes through
    assert [b["c"] for b in iterate_batches({"a": torch.arange(4), "c": None}, 3, order[-4:])] == [None, None]
