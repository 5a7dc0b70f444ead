import shutil

import numpy as np
import pytest
import torch

from deqfusion.data import download
from deqfusion.data.mogonet import DATASETS, dataset_files, known_checksums, load_dataset, load_mogonet
from deqfusion.errors import DataError


def make_folder(root, n_tr=12, n_te=6, dims=(5, 4, 3), num_classes=3, seed=0):
    """A small, valid MOGONET-format folder (no header, labels written as floats)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i, d in enumerate(dims, 1):
        np.savetxt(root / f"{i}_tr.csv", rng.normal(size=(n_tr, d)) * 3 + i, delimiter=",")
        np.savetxt(root / f"{i}_te.csv", rng.normal(size=(n_te, d)) * 3 + i, delimiter=",")
        (root / f"{i}_featname.csv").write_text("".join(f"gene{i}_{j}\n" for j in range(d)))
    y_tr = np.arange(n_tr) % num_classes
    y_te = np.arange(n_te) % num_classes
    np.savetxt(root / "labels_tr.csv", y_tr.astype(float))
    np.savetxt(root / "labels_te.csv", y_te.astype(float))
    return root


# ------------------------------------------------------------------------------------ the real ROSMAP copy


def test_rosmap_real_copy(shared_data_dir):
    data = load_dataset("rosmap", shared_data_dir / "rosmap", download_missing=False)
    assert data.in_dims == [200, 200, 200]
    assert (data.n_train, data.n_test) == (245, 106)
    assert data.num_classes == 2
    assert sum(data.class_counts("train")) == 245 and min(data.class_counts("train")) > 0
    assert data.y_train.dtype == torch.int64 and data.x_train[0].dtype == torch.float32
    assert all(len(names) == 200 for names in data.feature_names)
    assert data.modality_names == ["mRNA", "DNA methylation", "miRNA"]
    assert data.scaling is None


def test_rosmap_recorded_hashes_match_the_shared_list(shared_data_dir):
    ours = known_checksums(DATASETS["rosmap"])
    theirs = download.read_checksums(shared_data_dir / "rosmap" / "SHA256SUMS")
    assert ours == theirs
    assert set(ours) == set(dataset_files(3))
    download.verify_folder(shared_data_dir / "rosmap", ours)


def test_rosmap_via_env_var_and_modality_subset(shared_data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("DEQFUSION_DATA_DIR", str(shared_data_dir))
    data = load_dataset("ROSMAP", modalities=[1, 3], download_missing=False, cache_dir=tmp_path)
    assert data.modalities == [1, 3] and data.in_dims == [200, 200]
    assert data.modality_names == ["mRNA", "miRNA"]
    with pytest.raises(DataError, match="modalities 1..3"):
        load_dataset("rosmap", shared_data_dir / "rosmap", modalities=[1, 4])


def test_rosmap_download_from_a_local_source_into_the_cache(shared_data_dir, monkeypatch, tmp_path):
    monkeypatch.delenv("DEQFUSION_DATA_DIR", raising=False)
    src = shared_data_dir / "rosmap"
    data = load_dataset("rosmap", source=src.as_uri(), cache_dir=tmp_path / "cache")
    cached = tmp_path / "cache" / "mogonet" / "rosmap"
    assert data.folder == cached and (cached / "1_tr.csv").is_file()
    assert data.n_train == 245
    # a second load finds the cache, with no source at all
    again = load_dataset("rosmap", cache_dir=tmp_path / "cache", download_missing=False)
    assert torch.equal(again.x_train[0], data.x_train[0])


def test_download_refuses_a_tampered_source(shared_data_dir, monkeypatch, tmp_path):
    monkeypatch.delenv("DEQFUSION_DATA_DIR", raising=False)
    src = tmp_path / "mirror"
    shutil.copytree(shared_data_dir / "rosmap", src)
    (src / "2_tr.csv").chmod(0o644)
    with open(src / "2_tr.csv", "a") as fh:
        fh.write("0\n")
    with pytest.raises(DataError, match="2_tr.csv: SHA-256 mismatch"):
        load_dataset("rosmap", source=src, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "mogonet" / "rosmap" / "2_tr.csv").exists()


def test_verify_catches_a_modified_local_copy(shared_data_dir, tmp_path):
    folder = tmp_path / "rosmap"
    shutil.copytree(shared_data_dir / "rosmap", folder)
    (folder / "labels_te.csv").chmod(0o644)
    lines = (folder / "labels_te.csv").read_text().splitlines()
    lines[0] = "1.0" if float(lines[0]) == 0 else "0.0"
    (folder / "labels_te.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="labels_te.csv: SHA-256 mismatch.*--no-verify"):
        load_dataset("rosmap", folder)
    data = load_dataset("rosmap", folder, verify=False)
    assert data.n_test == 106


def test_nothing_found_without_download(monkeypatch, tmp_path):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("DEQFUSION_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="not found.*--data-dir"):
        load_dataset("brca", cache_dir=tmp_path / "cache", download_missing=False)
    with pytest.raises(DataError, match=r"kipan dataset not found \(looked in .*\); pass --data-dir"):
        load_dataset("kipan", cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("nope")
    with pytest.raises(DataError, match="data folder not found"):
        load_dataset("rosmap", tmp_path / "missing")


def test_brca_shapes_are_checked_even_without_verification(tmp_path):
    folder = make_folder(tmp_path / "brca", dims=(6, 6, 5), num_classes=5, n_tr=15, n_te=5)
    for verify in (True, False):  # verify=False skips hashes only
        with pytest.raises(DataError, match="15 training samples, but brca has 612"):
            load_dataset("brca", folder, verify=verify)


def test_class_count_is_checked_without_verification(tmp_path):
    folder = make_folder(tmp_path / "lgg", num_classes=3)
    with pytest.raises(DataError, match=r"labels_tr.csv, line 3: label 2 is out of range for 2 classes"):
        load_dataset("lgg", folder, verify=False)
    folder = make_folder(tmp_path / "kipan", num_classes=3)
    assert load_dataset("kipan", folder, verify=False).num_classes == 3


@pytest.mark.parametrize("verify", [True, False])
def test_another_named_datasets_folder_is_refused(shared_data_dir, tmp_path, verify):
    # the ROSMAP files under the name lgg (same class count, no recorded shapes for lgg): the label hashes tell
    with pytest.raises(DataError, match=r"does not hold the lgg dataset: labels_tr.csv has the SHA-256 recorded "
                                        r"for rosmap; pass the matching --dataset"):
        load_dataset("lgg", shared_data_dir / "rosmap", verify=verify)
    # a modified copy (other label hashes) is still recognised by its shapes
    folder = tmp_path / "rosmap"
    shutil.copytree(shared_data_dir / "rosmap", folder)
    for f in folder.iterdir():
        f.chmod(0o644)
    for name in ("labels_tr.csv", "labels_te.csv"):
        lines = (folder / name).read_text().splitlines()
        lines[0] = "1.0" if float(lines[0]) == 0 else "0.0"
        (folder / name).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"does not hold the lgg dataset: its sample and feature counts "
                                        r"\(245 / 106 samples, \[200, 200, 200\] features\) are those of rosmap"):
        load_dataset("lgg", folder, verify=verify)
    # the same modified copy under its own name loads with verify=False (hashes skipped, shapes right)
    assert load_dataset("rosmap", folder, verify=False).n_train == 245


def test_a_generated_folder_of_brca_shapes_is_refused_as_kipan(tmp_path):
    folder = make_folder(tmp_path / "d", n_tr=612, n_te=263, dims=(1000, 1000, 503), num_classes=3)
    with pytest.raises(DataError, match="are those of brca"):
        load_dataset("kipan", folder, verify=False)


def test_incomplete_local_folders_are_errors_not_a_download(shared_data_dir, tmp_path, monkeypatch):
    root = tmp_path / "root"
    folder = root / "rosmap"
    shutil.copytree(shared_data_dir / "rosmap", folder)
    (folder / "3_te.csv").chmod(0o644)
    (folder / "3_te.csv").unlink()
    source = tmp_path / "source-that-must-not-be-used"
    monkeypatch.setenv("DEQFUSION_DATA_DIR", str(root))
    with pytest.raises(DataError, match=r"rosmap \(DEQFUSION_DATA_DIR\) is an incomplete rosmap dataset folder: "
                                        r"missing 3_te.csv"):
        load_dataset("rosmap", source=source, cache_dir=tmp_path / "cache")
    for given in (folder, root):  # --data-dir: the folder or the root holding it
        with pytest.raises(DataError, match=r"\(--data-dir\) is an incomplete .* missing 3_te.csv"):
            load_dataset("rosmap", given, source=source, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    # the upper-case folder name of the MOGONET repository is found too
    monkeypatch.setenv("DEQFUSION_DATA_DIR", str(shared_data_dir.parent / "data"))
    upper = tmp_path / "up"
    shutil.copytree(shared_data_dir / "rosmap", upper / "ROSMAP")
    monkeypatch.setenv("DEQFUSION_DATA_DIR", str(upper))
    assert load_dataset("rosmap", download_missing=False, cache_dir=tmp_path / "c").folder == upper / "ROSMAP"


# ---------------------------------------------------------------------------------------- the format


def test_small_folder_loads_and_scales(tmp_path):
    folder = make_folder(tmp_path / "d")
    data = load_mogonet(folder)
    assert data.modalities == [1, 2, 3] and data.in_dims == [5, 4, 3]
    assert data.num_classes == 3 and data.class_counts() == [4, 4, 4]
    raw = np.loadtxt(folder / "2_tr.csv", delimiter=",")
    assert np.allclose(data.x_train[1].numpy(), raw, atol=1e-5)
    scaled = data.minmax_scaled()
    for x in scaled.x_train:
        assert torch.allclose(x.min(0).values, torch.zeros(x.shape[1]), atol=1e-6)
        assert torch.allclose(x.max(0).values, torch.ones(x.shape[1]), atol=1e-5)
    # the test set uses the training statistics
    lo = data.x_train[0].min(0).values
    hi = (data.x_train[0] - lo).max(0).values + 1e-10
    assert torch.allclose(scaled.x_test[0], (data.x_test[0] - lo) / hi)
    # fitting on a subset uses only those rows
    sub = data.minmax_scaled([0, 1, 2])
    assert torch.allclose(sub.x_train[0][:3].max(0).values, torch.ones(5), atol=1e-5)
    with pytest.raises(ValueError, match="already scaled"):
        scaled.minmax_scaled()


def test_featnames_optional_and_trailing_comma(tmp_path):
    folder = make_folder(tmp_path / "d")
    (folder / "1_featname.csv").unlink()
    text = (folder / "3_te.csv").read_text().splitlines()
    (folder / "3_te.csv").write_text("\n".join(t + "," for t in text) + "\n\n")
    data = load_mogonet(folder)
    assert data.feature_names[0] is None and data.in_dims[2] == 3


def _break(folder, name, text):
    (folder / name).write_text(text)


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("2_tr.csv", None, r"2_tr.csv: file not found"),
        ("labels_tr.csv", None, r"labels_tr.csv: file not found"),
        ("1_te.csv", "", r"1_te.csv: file is empty"),
        ("1_tr.csv", "a,b,c,d,e\n" + "1,2,3,4,5\n" * 11, r"1_tr.csv, line 1, column 1: 'a' is not a number "
         r"\(these files have no header line\)"),
        ("1_tr.csv", "1,2,3,4,5\n" * 5 + "1,2,x,4,5\n" + "1,2,3,4,5\n" * 6, r"line 6, column 3: 'x'"),
        ("1_tr.csv", "1,2,3,4,5\n" * 5 + "1,2,3,4\n" + "1,2,3,4,5\n" * 6, r"line 6: 4 values, but line 1 has 5"),
        ("2_te.csv", "1,2,3,nan\n" * 6, r"2_te.csv: 6 NaN/inf value\(s\), first at line 1, column 4"),
        ("3_tr.csv", "1,2,3\n" * 11, r"3_tr.csv: 11 samples, but labels_tr.csv has 12 labels"),
        ("3_te.csv", "1,2,3\n" * 7, r"3_te.csv: 7 samples, but labels_te.csv has 6 labels"),
        ("2_te.csv", "1,2,3\n" * 6, r"2_te.csv: 3 features, but 2_tr.csv has 4"),
        ("labels_te.csv", "0\n1\n2.5\n0\n1\n2\n", r"labels_te.csv, line 3: label 2.5 is not an integer"),
        ("labels_te.csv", "0\n1\n7\n0\n1\n2\n", r"labels_te.csv, line 3: label 7 is out of range for 3 classes"),
        ("labels_tr.csv", "0\n-1\n" + "1\n" * 10, r"labels_tr.csv, line 2: label -1 is negative"),
        ("labels_tr.csv", "0,1\n" * 12, r"labels_tr.csv: expected one label per line"),
        ("labels_tr.csv", "0\n2\n" * 6, r"labels_tr.csv: class\(es\) \[1\] have no training sample"),
        ("1_featname.csv", "a\nb\n", r"1_featname.csv: 2 feature names for 5 features"),
        ("1_tr.csv", b"\xff\xfe\x00", r"1_tr.csv: not a text file"),
    ],
)
def test_loader_errors_name_the_file(tmp_path, name, content, match):
    folder = make_folder(tmp_path / "d")
    if content is None:
        (folder / name).unlink()
    elif isinstance(content, bytes):
        (folder / name).write_bytes(content)
    else:
        _break(folder, name, content)
    with pytest.raises(DataError, match=match):
        load_mogonet(folder, num_classes=3)


def test_modality_selection_errors(tmp_path):
    folder = make_folder(tmp_path / "d")
    with pytest.raises(DataError, match="distinct numbers"):
        load_mogonet(folder, [1, 1])
    with pytest.raises(DataError, match="4_tr.csv: file not found"):
        load_mogonet(folder, [1, 4])
    with pytest.raises(DataError, match="no modality files"):
        load_mogonet(tmp_path)
    with pytest.raises(DataError, match="data folder not found"):
        load_mogonet(tmp_path / "nothing")
