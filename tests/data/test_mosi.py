import csv
import pickle

import numpy as np
import pytest

from deqfusion.data import mosi
from deqfusion.errors import DataError

# ---------------------------------------------------------------------------------------------------------
# the real files
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(shared_data_dir):
    return mosi.load_mosi_features(shared_data_dir / "cmu-mosi-bclstm")


def test_real_features_counts_labels_alignment(real, shared_data_dir):
    # standard split 1284 / 229 / 686; two dev and two test utterances have no continuous label
    assert real.counts() == {"train": 1284, "dev": 227, "test": 684}
    assert real.dropped == {"train": 0, "dev": 2, "test": 2}
    assert real.dropped_by_source == {"train": 4, "test": 0}  # all four are in bc-LSTM's train split
    assert real.dims == {"text": 100, "audio": 73, "video": 100}
    for sp in real.splits.values():
        assert sp.labels.min() >= -3 and sp.labels.max() <= 3
        assert len(set(sp.ids)) == len(sp)
        for m in mosi.MODALITIES:
            assert sp.features[m].shape == (len(sp), real.dims[m]) and sp.features[m].dtype == np.float32
            assert np.isfinite(sp.features[m]).all()
    assert real.splits["train"].labels.min() == -3 and real.splits["train"].labels.max() == 3
    # no utterance in two splits
    ids = [set(sp.ids) for sp in real.splits.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])

    # alignment against the transcripts: the labels of the standard split agree with the Cross-Modal BERT
    # text files (which carry the same continuous labels), as a multiset per split
    text = mosi.load_mosi_text(shared_data_dir / "cmu-mosi-text")
    for s in mosi.SPLITS:
        ours = np.sort(real.splits[s].labels)
        theirs = np.sort(text[s].labels)
        # every one of our labels occurs in the text file of the same split
        assert np.isin(np.round(ours, 4), np.round(theirs, 4)).all()
        assert len(theirs) - len(ours) == real.dropped[s]

    # a known utterance: first transcript row, "ANYHOW IT WAS REALLY GOOD", label 2.4, standard train split
    tr = real.splits["train"]
    i = tr.ids.index("03bSnISJMiM_1")
    assert tr.labels[i] == pytest.approx(2.4)
    # its text features are row 0 of the bc-LSTM *test* file (first value -0.571784)
    assert tr.features["text"][i, 0] == pytest.approx(-0.571784, abs=1e-5)
    # transcript 39, "KIDS ARE GONNA LOVE THE FILM" (2.6), is row 0 of the bc-LSTM train file (-1.13522)
    j = tr.ids.index("1DmNV9C1hbY_10")
    assert tr.labels[j] == pytest.approx(2.6)
    assert tr.features["text"][j, 0] == pytest.approx(-1.13522, abs=1e-5)


def test_real_data_root_resolution_and_subsets(shared_data_dir, real):
    d = mosi.load_mosi_features(shared_data_dir, modalities=["audio"])
    assert d.modalities == ["audio"]
    np.testing.assert_array_equal(d.splits["test"].features["audio"], real.splits["test"].features["audio"])
    z = mosi.standardize(real)
    tr = z.splits["train"].features["audio"]
    assert np.allclose(tr.mean(0), 0, atol=1e-4)
    std = tr.std(0)
    assert np.all((np.abs(std - 1) < 1e-3) | (std < 1e-6))  # constant columns stay 0
    assert not np.allclose(z.splits["test"].features["audio"].mean(0), 0, atol=1e-4)


def test_real_text_files(shared_data_dir):
    text = mosi.load_mosi_text(shared_data_dir)
    assert {s: len(v) for s, v in text.items()} == {"train": 1284, "dev": 229, "test": 686}
    assert all(v.labels.min() >= -3 and v.labels.max() <= 3 for v in text.values())
    assert text["train"].texts[0] == "A LOT OF SAD PARTS"


# ---------------------------------------------------------------------------------------------------------
# small files of the same structure, and each broken variant
# ---------------------------------------------------------------------------------------------------------

DIMS = {"text": 4, "audio": 3, "video": 2}


def _write_rows(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_ALL)
        for r in rows:
            w.writerow(r)


def make_release(root, n_train=6, n_test=4, seed=0):
    """A miniature bc-LSTM release: 10 utterances, standard split train 5 / dev 2 / test 3 (one unlabeled)."""
    rng = np.random.default_rng(seed)
    bins = {"train": rng.integers(0, 2, n_train), "test": rng.integers(0, 2, n_test)}
    for m, d in DIMS.items():
        for b, suffix in (("train", "train0"), ("test", "test0")):
            x = rng.normal(size=(len(bins[b]), d))
            rows = [[f"{v:.6f}" for v in row] + [str(int(lab))] for row, lab in zip(x, bins[b], strict=True)]
            _write_rows(root / m / f"{m}_{suffix}.csv", rows)
    splits = ["train"] * 5 + ["dev"] * 2 + ["test"] * 3
    order = [("train", i) for i in range(n_train)] + [("test", i) for i in range(n_test)]
    rows = []
    for k, ((b, i), s) in enumerate(zip(order, splits, strict=True)):
        lab = bins[b][i]
        cont = "" if k == 9 else (f"{rng.uniform(0.1, 3):.1f}" if lab else f"{-rng.uniform(0.1, 3):.1f}")
        rows.append([k, f"vid_{k}", "SOME TEXT", 1, int(lab), cont, 1, s, b, i])
    with open(root / "utterance_index.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["transcript_row", "utt_id", "text", "video_idx", "label_bin", "label_cont", "n",
                    "cmbert_split", "bclstm_split", "bclstm_row"])
        w.writerows(rows)
    return root


def _rewrite_index(root, edit):
    with open(root / "utterance_index.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    edit(rows)
    with open(root / "utterance_index.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def test_small_release_loads(tmp_path):
    root = make_release(tmp_path / "rel")
    d = mosi.load_mosi_features(root)
    assert d.counts() == {"train": 5, "dev": 2, "test": 2}
    assert d.dropped == {"train": 0, "dev": 0, "test": 1}
    assert d.dims == DIMS
    # row 0 of the index -> row 0 of the train files
    first = next(iter(csv.reader(open(root / "text" / "text_train0.csv"))))
    assert d.splits["train"].features["text"][0] == pytest.approx([float(v) for v in first[:-1]], abs=1e-6)


def test_missing_feature_file(tmp_path):
    root = make_release(tmp_path / "rel")
    (root / "video" / "video_test0.csv").unlink()
    with pytest.raises(DataError, match="video_test0.csv"):
        mosi.load_mosi_features(root)


def test_feature_folder_resolution_rule(tmp_path, monkeypatch):
    root = tmp_path / "root"
    make_release(root / mosi.FEATURES_FOLDER)
    monkeypatch.setenv("DEQFUSION_DATA_DIR", str(root))
    assert mosi.resolve_features_root() == root / mosi.FEATURES_FOLDER
    assert mosi.resolve_features_root(root) == root / mosi.FEATURES_FOLDER
    (root / mosi.FEATURES_FOLDER / "audio" / "audio_train0.csv").unlink()
    with pytest.raises(DataError, match=r"\(DEQFUSION_DATA_DIR\) is an incomplete MOSI feature folder: missing "
                                        r"audio/audio_train0.csv"):
        mosi.load_mosi_features(None)


def test_missing_folder_and_index(tmp_path):
    with pytest.raises(DataError, match="not found"):
        mosi.load_mosi_features(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="utterance_index.csv"):
        mosi.load_mosi_features(tmp_path / "empty")


def test_non_numeric_value(tmp_path):
    root = make_release(tmp_path / "rel")
    p = root / "audio" / "audio_train0.csv"
    rows = list(csv.reader(open(p)))
    rows[2][1] = "abc"
    _write_rows(p, rows)
    with pytest.raises(DataError, match=r"audio_train0.csv, line 3: not a number: 'abc'"):
        mosi.load_mosi_features(root)


def test_ragged_rows(tmp_path):
    root = make_release(tmp_path / "rel")
    p = root / "text" / "text_test0.csv"
    rows = list(csv.reader(open(p)))
    rows[1] = rows[1][:-2] + rows[1][-1:]
    _write_rows(p, rows)
    with pytest.raises(DataError, match=r"text_test0.csv, line 2: 4 columns, but line 1 has 5"):
        mosi.load_mosi_features(root)


def test_modality_files_with_different_row_counts(tmp_path):
    root = make_release(tmp_path / "rel")
    p = root / "video" / "video_train0.csv"
    rows = list(csv.reader(open(p)))
    _write_rows(p, rows[:-1])
    with pytest.raises(DataError, match="video_train0.csv has 5 rows"):
        mosi.load_mosi_features(root)


def test_modality_files_not_row_aligned(tmp_path):
    root = make_release(tmp_path / "rel")
    p = root / "audio" / "audio_train0.csv"
    rows = list(csv.reader(open(p)))
    labs = [r[-1] for r in rows]
    if len(set(labs)) == 1:
        rows[0][-1] = "0" if labs[0] == "1" else "1"
    else:
        rows = rows[::-1] if labs != labs[::-1] else rows[1:] + rows[:1]
    _write_rows(p, rows)
    with pytest.raises(DataError, match="not row-aligned"):
        mosi.load_mosi_features(root)


def test_label_column_not_binary(tmp_path):
    root = make_release(tmp_path / "rel")
    p = root / "text" / "text_train0.csv"
    rows = list(csv.reader(open(p)))
    rows[0][-1] = "0.5"
    _write_rows(p, rows)
    with pytest.raises(DataError, match="binary label"):
        mosi.load_mosi_features(root)


def test_index_missing_column(tmp_path):
    root = make_release(tmp_path / "rel")
    _rewrite_index(root, lambda rows: [r.pop(5) for r in rows])
    with pytest.raises(DataError, match=r"missing column\(s\) \['label_cont'\]"):
        mosi.load_mosi_features(root)


def test_index_row_out_of_range(tmp_path):
    root = make_release(tmp_path / "rel")

    def edit(rows):
        rows[1][9] = "17"

    _rewrite_index(root, edit)
    with pytest.raises(DataError, match="line 2: bclstm_row 17 is outside the 6 rows"):
        mosi.load_mosi_features(root)


def test_index_row_used_twice(tmp_path):
    root = make_release(tmp_path / "rel")

    def edit(rows):
        rows[2][8], rows[2][9], rows[2][4] = rows[1][8], rows[1][9], rows[1][4]

    _rewrite_index(root, edit)
    with pytest.raises(DataError, match="lines 2 and 3 both point at row 0"):
        mosi.load_mosi_features(root)


def test_index_binary_label_disagrees(tmp_path):
    root = make_release(tmp_path / "rel")

    def edit(rows):
        rows[3][4] = "0" if rows[3][4] == "1" else "1"

    _rewrite_index(root, edit)
    with pytest.raises(DataError, match="line 4: binary label .* disagrees"):
        mosi.load_mosi_features(root)


@pytest.mark.parametrize(("value", "message"), [("7.5", "outside"), ("high", "not a number")])
def test_index_bad_continuous_label(tmp_path, value, message):
    root = make_release(tmp_path / "rel")

    def edit(rows):
        rows[2][5] = value

    _rewrite_index(root, edit)
    with pytest.raises(DataError, match=f"line 3: label_cont .*{message}"):
        mosi.load_mosi_features(root)


def test_index_unknown_split(tmp_path):
    root = make_release(tmp_path / "rel")

    def edit(rows):
        rows[1][7] = "valid"

    _rewrite_index(root, edit)
    with pytest.raises(DataError, match="cmbert_split 'valid'"):
        mosi.load_mosi_features(root)


def test_transcript_row_cross_check(tmp_path):
    root = make_release(tmp_path / "rel")
    # text_{train,test}.csv: first column = transcript row of each feature row
    _write_rows(root / "text_train.csv", [[str(i)] for i in range(6)])
    _write_rows(root / "text_test.csv", [[str(6 + i)] for i in range(4)])
    assert mosi.load_mosi_features(root).counts()["train"] == 5
    _write_rows(root / "text_test.csv", [[str(6 + i)] for i in (1, 0, 2, 3)])
    with pytest.raises(DataError, match="transcript_row 6 but row 0 of text_test.csv is transcript 7"):
        mosi.load_mosi_features(root)


def test_unknown_modality(tmp_path):
    root = make_release(tmp_path / "rel")
    with pytest.raises(DataError, match="unknown modality"):
        mosi.load_mosi_features(root, modalities=["text", "smell"])


# ---------------------------------------------------------------------------------------------------------
# TSV text files
# ---------------------------------------------------------------------------------------------------------


def _tsv(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_tsv_ok(tmp_path):
    p = _tsv(tmp_path / "a.tsv", ["text\tlabel", "GOOD MOVIE\t2.2", "BAD\t-1.0", ""])
    sp = mosi.load_mosi_tsv(p)
    assert sp.texts == ["GOOD MOVIE", "BAD"]
    np.testing.assert_allclose(sp.labels, [2.2, -1.0], rtol=1e-6)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["sentence\tscore", "A\t1"], "header should be"),
        (["text\tlabel", "A\t1\textra"], "line 2: expected 2 tab-separated fields"),
        (["text\tlabel", "A\tgood"], "line 2: label 'good' is not a number"),
        (["text\tlabel", "A\t1.0", "B\t3.5"], "line 3: label 3.5 is outside"),
        (["text\tlabel", " \t1.0"], "line 2: empty text"),
        (["text\tlabel"], "no rows"),
    ],
)
def test_tsv_errors(tmp_path, lines, message):
    p = _tsv(tmp_path / "bad.tsv", lines)
    with pytest.raises(DataError, match=message):
        mosi.load_mosi_tsv(p)


def test_tsv_missing_and_empty_and_binary(tmp_path):
    with pytest.raises(DataError, match="not found"):
        mosi.load_mosi_tsv(tmp_path / "nope.tsv")
    (tmp_path / "e.tsv").write_text("")
    with pytest.raises(DataError, match="empty"):
        mosi.load_mosi_tsv(tmp_path / "e.tsv")
    (tmp_path / "b.tsv").write_bytes(b"text\tlabel\n\xff\xfe\t1\n")
    with pytest.raises(DataError, match="not UTF-8"):
        mosi.load_mosi_tsv(tmp_path / "b.tsv")


def test_text_folder_missing_split(tmp_path):
    _tsv(tmp_path / "train.tsv", ["text\tlabel", "A\t1"])
    _tsv(tmp_path / "dev.tsv", ["text\tlabel", "A\t1"])
    with pytest.raises(DataError, match="test.tsv"):
        mosi.load_mosi_text(tmp_path)


# ---------------------------------------------------------------------------------------------------------
# audio pickle
# ---------------------------------------------------------------------------------------------------------


def _pickle(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)
    return path


def _audio(n=(4, 2, 3), seq=50, dim=5):
    rng = np.random.default_rng(1)
    return tuple(rng.normal(size=(k, seq, dim)).astype(np.float64) for k in n)


def test_audio_pickle_ok_and_aligned(tmp_path):
    p = _pickle(tmp_path / "a.pickle", _audio())
    a = mosi.load_mosi_audio(p)
    assert {k: v.shape for k, v in a.items()} == {"train": (4, 50, 5), "dev": (2, 50, 5), "test": (3, 50, 5)}
    assert a["train"].dtype == np.float32
    text = {s: mosi.MosiTextSplit(["x"] * k, np.zeros(k, np.float32)) for s, k in zip(mosi.SPLITS, (4, 2, 3),
                                                                                        strict=True)}
    mosi.check_alignment(text, a, p)
    text["dev"] = mosi.MosiTextSplit(["x"] * 3, np.zeros(3, np.float32))
    with pytest.raises(DataError, match="dev split has 2 audio arrays but the text file has 3 rows"):
        mosi.check_alignment(text, a, p)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (_audio()[:2], "tuple of arrays, got a tuple of length 2"),
        ({"train": 1}, "got a dict"),
        (_audio(seq=40), "40 positions, expected 50"),
        (_audio(dim=6), "6 features per position, expected 5"),
        ((np.zeros((2, 50)), np.zeros((1, 50, 5)), np.zeros((1, 50, 5))), r"shape \(2, 50\)"),
        ((np.zeros((2, 50, 5)), np.full((1, 50, 5), np.nan), np.zeros((1, 50, 5))), "NaN or inf in 1"),
    ],
)
def test_audio_pickle_errors(tmp_path, obj, message):
    p = _pickle(tmp_path / "bad.pickle", obj)
    with pytest.raises(DataError, match=message):
        mosi.load_mosi_audio(p)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_audio_pickle_refuses_code_and_garbage(tmp_path, capsys):
    p = _pickle(tmp_path / "evil.pickle", (_Evil(), np.zeros((1, 50, 5)), np.zeros((1, 50, 5))))
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        mosi.load_mosi_audio(p)
    assert "never run" not in capsys.readouterr().out
    (tmp_path / "junk.pickle").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="junk.pickle"):
        mosi.load_mosi_audio(tmp_path / "junk.pickle")
    with pytest.raises(DataError, match="not found"):
        mosi.load_mosi_audio(tmp_path / "none.pickle")
    # any sizes accepted when asked
    p2 = _pickle(tmp_path / "any.pickle", _audio(seq=7, dim=2))
    assert mosi.load_mosi_audio(p2, seq_len=None, feat_dim=None)["test"].shape == (3, 7, 2)


def test_leak_free_resplit_on_real_files(real):
    d = mosi.resplit_by_source(real)
    counts = d.counts()
    # every labelled utterance once; the test split is the whole bc-LSTM test split (752, all labelled)
    assert sum(counts.values()) == sum(real.counts().values()) == 2195
    assert counts["test"] == 752
    assert d.dropped == {"train": 4, "dev": 0, "test": 0}
    assert set(d.splits["test"].source) == {"test"}
    assert set(d.splits["train"].source) == set(d.splits["dev"].source) == {"train"}
    video = lambda sp: {u.rsplit("_", 1)[0] for u in sp.ids}  # noqa: E731
    assert not video(d.splits["dev"]) & video(d.splits["train"])  # dev speakers are unseen in training
    assert not video(d.splits["test"]) & video(d.splits["train"])
    # the same split for any caller; features travel with their utterance
    again = mosi.resplit_by_source(real)
    assert again.splits["dev"].ids == d.splits["dev"].ids
    i = d.splits["test"].ids.index("03bSnISJMiM_1")
    assert d.splits["test"].features["text"][i, 0] == pytest.approx(-0.571784, abs=1e-5)
    with pytest.raises(ValueError, match="dev_fraction"):
        mosi.resplit_by_source(real, dev_fraction=1.5)
