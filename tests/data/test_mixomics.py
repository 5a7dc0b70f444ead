import shutil

import pytest
import torch

from deqfusion.data.mixomics import CLASSES, FOLDER, MODALITIES, load_mixomics, required_files, resolve_folder
from deqfusion.errors import DataError

PROTOCOL = ("protein",)  # the missing-modality protocol: no protein in the test part


def make_folder(folder, n_train=9, n_test=6, dims=(4, 3, 2), test_protein=False, seed=0):
    """A small folder in the real format: row/column names, one 'subtype' column of label strings."""
    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        for m, d in zip(MODALITIES, dims, strict=True):
            if split == "test" and m == "protein" and not test_protein:
                continue
            x = torch.randn(n, d, generator=g)
            lines = ["," + ",".join(f"{m}{j}" for j in range(d))]
            lines += [f"{split}{i}," + ",".join(f"{v:.6f}" for v in x[i].tolist()) for i in range(n)]
            (folder / f"{split}_{m}.csv").write_text("\n".join(lines) + "\n")
        labels = [CLASSES[i % 3] for i in range(n)]
        (folder / f"{split}_subtype.csv").write_text("subtype\n" + "\n".join(labels) + "\n")
    return folder


def test_small_folder_in_the_real_format(tmp_path):
    folder = make_folder(tmp_path / FOLDER)
    data = load_mixomics(tmp_path, test_missing=PROTOCOL)
    assert data.folder == folder and data.in_dims == {"mrna": 4, "mirna": 3, "protein": 2}
    assert data.class_names == list(CLASSES) and data.y_train.tolist() == [0, 1, 2] * 3
    assert data.test_missing == ["protein"] and data.train_samples[0] == "train0"
    lines = (folder / "train_mirna.csv").read_text().splitlines()
    first = [float(v) for v in lines[1].split(",")[1:]]
    assert data.x_train["mirna"][0].tolist() == pytest.approx(first, abs=1e-6)
    # without the protocol's declaration the folder is incomplete: test_protein.csv is required
    with pytest.raises(DataError, match=r"incomplete .* missing test_protein.csv"):
        load_mixomics(folder)
    # a protein test file that the protocol declares absent is not read
    make_folder(tmp_path / "with_protein", test_protein=True)
    full = load_mixomics(tmp_path / "with_protein")
    assert full.test_missing == [] and full.x_test["protein"].shape == (6, 2)
    assert load_mixomics(tmp_path / "with_protein", test_missing=PROTOCOL).test_missing == ["protein"]


def test_a_deleted_test_file_is_an_error_not_one_more_missing_modality(tmp_path):
    folder = make_folder(tmp_path / FOLDER)
    (folder / "test_mrna.csv").unlink()
    with pytest.raises(DataError, match=r"tcga-breast-mixomics \(--data-dir\) is an incomplete .* missing "
                                        r"test_mrna.csv"):
        load_mixomics(folder, test_missing=PROTOCOL)
    with pytest.raises(DataError, match="unknown modalities"):
        load_mixomics(folder, test_missing=("rna",))
    with pytest.raises(DataError, match="every modality absent"):
        load_mixomics(folder, test_missing=MODALITIES)
    assert required_files(PROTOCOL) == ["train_mrna.csv", "train_mirna.csv", "train_protein.csv",
                                        "train_subtype.csv", "test_mrna.csv", "test_mirna.csv", "test_subtype.csv"]


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_misspelt_label_names_file_line_and_classes(tmp_path, split):
    folder = make_folder(tmp_path / FOLDER)
    path = folder / f"{split}_subtype.csv"
    lines = path.read_text().splitlines()
    lines[2] = "Basall"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{split}_subtype.csv, line 3: label 'Basall' is not one of the declared "
                                        r"classes \['Basal', 'Her2', 'LumA'\]"):
        load_mixomics(folder, test_missing=PROTOCOL)


def test_a_class_without_training_samples_is_refused(tmp_path):
    folder = make_folder(tmp_path / FOLDER)
    path = folder / "train_subtype.csv"
    path.write_text(path.read_text().replace("Her2", "LumA"))
    with pytest.raises(DataError, match=r"train_subtype.csv: class\(es\) \['Her2'\] have no training sample"):
        load_mixomics(folder, test_missing=PROTOCOL)


def test_real_copy(shared_data_dir):
    data = load_mixomics(shared_data_dir, test_missing=PROTOCOL)
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
    assert load_mixomics(shared_data_dir / FOLDER, test_missing=PROTOCOL).y_test.tolist() == data.y_test.tolist()


def test_the_real_copy_needs_the_protocol_declaration(shared_data_dir):
    with pytest.raises(DataError, match="missing test_protein.csv"):
        load_mixomics(shared_data_dir)


def test_minmax_scaling_is_fitted_on_the_given_rows(shared_data_dir):
    data = load_mixomics(shared_data_dir, test_missing=PROTOCOL)
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
        ("test_subtype.csv", lambda ls: ls[:-1] + ["Normal"], r"line 71: label 'Normal' is not one of the declared"),
        ("train_subtype.csv", lambda ls: ls[:5] + ["Basall"] + ls[6:], r"line 6: label 'Basall' is not one"),
        ("train_subtype.csv", lambda ls: ["label"] + ls[1:], "header 'subtype'"),
    ],
)
def test_errors_name_the_file_and_the_problem(copy, name, fn, match):
    _edit(copy / name, fn)
    with pytest.raises(DataError, match=match) as err:
        load_mixomics(copy, test_missing=PROTOCOL)
    assert name in str(err.value) or "samples" in match


def test_missing_files_and_folders(copy, tmp_path, monkeypatch):
    (copy / "train_protein.csv").unlink()
    with pytest.raises(DataError, match="incomplete mixOmics TCGA breast folder: missing train_protein.csv"):
        load_mixomics(copy, test_missing=PROTOCOL)
    with pytest.raises(DataError, match="data folder not found"):
        resolve_folder(tmp_path / "nowhere")
    with pytest.raises(DataError, match="holds neither"):
        resolve_folder(copy.parent.parent)


def test_the_folder_resolution_rule(tmp_path, monkeypatch):
    root = tmp_path / "root"
    make_folder(root / FOLDER)
    cache = tmp_path / "cache"
    make_folder(cache / FOLDER, seed=1)
    monkeypatch.setenv("DEQFUSION_DATA_DIR", str(root))
    # --data-dir first, then the environment, then the cache
    assert resolve_folder(cache, PROTOCOL, cache_dir=cache) == cache / FOLDER
    assert resolve_folder(None, PROTOCOL, cache_dir=cache) == root / FOLDER
    monkeypatch.setenv("DEQFUSION_DATA_DIR", str(tmp_path / "other"))
    (tmp_path / "other").mkdir()
    assert resolve_folder(None, PROTOCOL, cache_dir=cache) == cache / FOLDER
    # an incomplete folder under DEQFUSION_DATA_DIR is an error naming the missing file, not a reason to use the cache
    monkeypatch.setenv("DEQFUSION_DATA_DIR", str(root))
    (root / FOLDER / "train_mirna.csv").unlink()
    with pytest.raises(DataError, match=r"\(DEQFUSION_DATA_DIR\) is an incomplete .* missing train_mirna.csv"):
        load_mixomics(test_missing=PROTOCOL, cache_dir=cache)
    monkeypatch.setenv("DEQFUSION_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="DEQFUSION_DATA_DIR=.*nowhere is not a folder"):
        resolve_folder(None, PROTOCOL, cache_dir=cache)
    monkeypatch.delenv("DEQFUSION_DATA_DIR")
    with pytest.raises(DataError, match=r"not found \(looked in .*empty.*\); pass --data-dir or set DEQFUSION"):
        resolve_folder(None, PROTOCOL, cache_dir=tmp_path / "empty")
