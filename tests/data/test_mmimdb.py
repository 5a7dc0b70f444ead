import h5py
import numpy as np
import pytest
import torch

from deqfusion.data import mmimdb
from deqfusion.errors import DataError

from .mmimdb_files import make_arrays, write_file


def test_split_bounds_full_and_proportional():
    full = {"train": (0, 15552), "valid": (15552, 18160), "test": (18160, 25959)}
    assert mmimdb.split_bounds(25959) == full
    b = mmimdb.split_bounds(1000)
    assert b == {"train": (0, 599), "valid": (599, 700), "test": (700, 1000)}
    assert mmimdb.split_bounds(10, split=(5, 7))["test"] == (7, 10)
    with pytest.raises(DataError, match="cannot split 3 rows"):
        mmimdb.split_bounds(3)
    with pytest.raises(DataError, match="non-empty"):
        mmimdb.split_bounds(10, split=(5, 5))


def test_load_splits_reads_the_right_rows(tmp_path):
    path = write_file(tmp_path / "imdb.hdf5", n_rows=100)
    info = mmimdb.inspect_file(path)
    assert (info.n_rows, info.text_dim, info.image_dim, info.num_labels) == (100, 300, 4096, 23)
    assert not info.full_split
    splits = mmimdb.load_splits(path, chunk_rows=7)  # chunks not aligned with split boundaries
    text, image, genres = make_arrays(100)
    for name, (lo, hi) in info.bounds.items():
        s = splits[name]
        assert s.text.dtype == np.float32 and s.labels.dtype == np.float32
        assert s.text[:, 0].tolist() == list(range(lo, hi))
        np.testing.assert_array_equal(s.image, image[lo:hi])
        np.testing.assert_array_equal(s.labels, genres[lo:hi])
        assert len(s) == hi - lo
    t = splits["test"].tensors()
    assert t["image"].dtype == torch.float32 and t["labels"].shape == (100 - info.bounds["valid"][1], 23)
    assert mmimdb.load_split(path, "validation").start == info.bounds["valid"][0]


def test_explicit_split(tmp_path):
    path = write_file(tmp_path / "imdb.hdf5", n_rows=30)
    s = mmimdb.load_split(path, "valid", split=(10, 20))
    assert s.text[:, 0].tolist() == list(range(10, 20))


def _rewrite(path, key, data):
    with h5py.File(path, "a") as h5:
        del h5[key]
        h5.create_dataset(key, data=data)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: _rewrite(p, "features", np.zeros((40, 300), np.float32)), "disagree on the number"),
        (lambda p: _rewrite(p, "vgg_features", np.zeros((50, 4000), np.float32)), "4000 columns, expected"),
        (lambda p: _rewrite(p, "genres", np.zeros((50, 22), np.int8)), "22 columns, expected 23"),
        (lambda p: _rewrite(p, "features", np.zeros((50, 300, 1), np.float32)), "should be 2-D"),
        (lambda p: _rewrite(p, "features", np.zeros((50, 300), np.int32)), "expected floating-point"),
        (lambda p: _rewrite(p, "genres", np.array([["a"] * 23] * 50, dtype="S1")), "integer, bool or float"),
        (lambda p: h5py.File(p, "a").__delitem__("genres"), "missing dataset"),
    ],
)
def test_layout_errors(tmp_path, mutate, message):
    path = write_file(tmp_path / "imdb.hdf5", n_rows=50, with_images=False)
    mutate(path)
    with pytest.raises(DataError, match=message) as err:
        mmimdb.load_splits(path)
    assert str(path) in str(err.value)


def test_value_errors_name_the_row(tmp_path):
    path = write_file(tmp_path / "imdb.hdf5", n_rows=50)
    with h5py.File(path, "a") as h5:
        g = h5["genres"][...]
        g[37, 4] = 2
        h5["genres"][...] = g
    with pytest.raises(DataError, match="row 37, column 4"):
        mmimdb.load_split(path, "test")
    mmimdb.load_split(path, "train")  # row 37 is not in the training split

    path = write_file(tmp_path / "nan.hdf5", n_rows=50)
    with h5py.File(path, "a") as h5:
        h5["vgg_features"][12, 100] = np.nan
    with pytest.raises(DataError, match=r"'vgg_features' has NaN or inf values \(first in row 12\)"):
        mmimdb.load_split(path, "train", chunk_rows=5)


def test_file_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        mmimdb.inspect_file(tmp_path / "nope.hdf5")
    bad = tmp_path / "bad.hdf5"
    bad.write_text("not hdf5")
    with pytest.raises(DataError, match="cannot open as hdf5"):
        mmimdb.inspect_file(bad)
    path = write_file(tmp_path / "imdb.hdf5", n_rows=50)
    with pytest.raises(DataError, match="unknown MM-IMDB split"):
        mmimdb.load_split(path, "training")


def test_images_are_never_read(tmp_path, monkeypatch):
    path = write_file(tmp_path / "imdb.hdf5", n_rows=40)
    read = []
    orig = h5py.Dataset.__getitem__

    def spy(self, item):
        read.append(self.name)
        return orig(self, item)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    mmimdb.load_splits(path)
    assert set(read) == {"/features", "/vgg_features", "/genres"}
