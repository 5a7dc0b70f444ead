import shutil

import pytest
import torch

from deqfusion.data.mixomics import FOLDER, load_mixomics, resolve_folder
from deqfusion.errors import DataError


def test_real_copy(shared_data_dir):
    data = load_mixomics(shared_data_dir)
    assert data.folder == shared_data_dir / FOLDER
    assert data.in_dims == {"mrna": 200, "mirna": 184, "protein": 142}
    assert data.class_names == ["Basal", "Her2", "LumA"]
    assert data.y_train.numel() == 150 and data.y_test.numel() == 70
    assert torch.bincount(data.y_train).tolist() == [45, 30, 75]
    assert torch.bincount(data.y_test).tolist() == [21, 14, 35]
    assert data.test_missing == ["protein"] and sorted(data.x_test) == ["mirna", "mrna"]
    assert data.x_test["mrna"].shape == (70, 200) and data.x_train["protein"].shape == (150, 142)
    assert data.feature_names["mrna"][:2] == ["RTN2", "NDRG2"]
    assert not set(data.train_samples) & set(data.test_samples)
    # the folder itself works too
    assert load_mixomics(shared_data_dir / FOLDER).y_test.tolist() == data.y_test.tolist()


def test_minmax_scaling_is_fitted_on_the_given_rows(shared_data_dir):
    data = load_mixomics(shared_data_dir)
    fit = torch.arange(0, 150, 2)
    s = data.minmax_scaled(fit)
    for m in data.modalities:
        assert s.x_train[m][fit].min() >= 0 and s.x_train[m][fit].max() <= 1 + 1e-6
    assert s.x_train["mrna"].min() < 0 or s.x_train["mrna"].max() > 1  # the other rows are not refitted
    assert "protein" not in s.x_test


@pytest.fixture
def copy(shared_data_dir, tmp_path):
    dst = tmp_path / FOLDER
    shutil.copytree(shared_data_dir / FOLDER, dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst


def _edit(path, fn):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(fn(lines)) + "\n")


@pytest.mark.parametrize(
    "name, fn, match",
    [
        ("train_mrna.csv", lambda ls: [ls[0], ls[1].replace(",", ",nan,", 1).rsplit(",", 1)[0]] + ls[2:],
         "NaN or inf"),
        ("train_mirna.csv", lambda ls: [ls[0], ls[1].rsplit(",", 1)[0] + ",abc"] + ls[2:], "'abc' is not a number"),
        ("train_protein.csv", lambda ls: [ls[0], ls[1] + ",1.0"] + ls[2:], "fields, the header has"),
        ("train_protein.csv", lambda ls: [ls[0], ls[2], ls[1]] + ls[3:], "samples differ from train_mrna.csv"),
        ("test_mirna.csv", lambda ls: [",".join([ls[0].split(",")[0]] + ls[0].split(",")[1:][::-1])] + ls[1:],
         "features differ from train_mirna.csv"),
        ("train_subtype.csv", lambda ls: ls[:-1], "149 labels for 150 samples"),
        ("test_subtype.csv", lambda ls: ls[:-1] + ["Normal"], r"\['Normal'\] never occur"),
        ("train_subtype.csv", lambda ls: ["label"] + ls[1:], "header 'subtype'"),
    ],
)
def test_errors_name_the_file_and_the_problem(copy, name, fn, match):
    _edit(copy / name, fn)
    with pytest.raises(DataError, match=match) as err:
        load_mixomics(copy)
    assert name in str(err.value) or "samples" in match


def test_missing_files_and_folders(copy, tmp_path, monkeypatch):
    (copy / "train_protein.csv").unlink()
    with pytest.raises(DataError, match="train_protein.csv: file not found"):
        load_mixomics(copy)
    with pytest.raises(DataError, match="data folder not found"):
        resolve_folder(tmp_path / "nowhere")
    with pytest.raises(DataError, match="holds neither"):
        resolve_folder(copy.parent.parent)
    monkeypatch.delenv("DEQFUSION_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="DEQFUSION_DATA_DIR"):
        resolve_folder(None)
