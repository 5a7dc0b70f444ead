"""The Cross-Modal BERT command end to end on files of the real structure: TSV transcripts, an audio pickle of
(n, L, 5) arrays, and a tiny random BERT saved to a folder."""

import csv
import json
import pickle

import numpy as np
import pytest

pytest.importorskip("transformers")

from deqfusion.cli import main  # noqa: E402
from tests.models.test_cmbert import WORDS, save_tiny_bert  # noqa: E402

SEQ = 12
COUNTS = {"train": 24, "dev": 8, "test": 8}


def make_files(root, counts=COUNTS, seed=0):
    rng = np.random.default_rng(seed)
    text_dir = root / "text"
    text_dir.mkdir(parents=True)
    audio = []
    for split, n in counts.items():
        lines = ["text\tlabel"]
        for _ in range(n):
            words = rng.choice(WORDS, size=rng.integers(2, 8))
            lines.append(" ".join(words).upper() + f"\t{rng.uniform(-3, 3):.1f}")
        (text_dir / f"{split}.tsv").write_text("\n".join(lines) + "\n")
        audio.append(rng.normal(size=(n, SEQ, 5)))
    with open(root / "audio.pickle", "wb") as fh:
        pickle.dump(tuple(audio), fh)
    return text_dir, root / "audio.pickle"


def _argv(text_dir, audio, bert, out, *extra):
    return ["mosi-bert", "--text-dir", str(text_dir), "--audio", str(audio), "--bert", str(bert), "--out",
            str(out), "--max-seq-length", str(SEQ), "--epochs", "2", "--batch-size", "8", "--device", "cpu",
            "--f-max-iter", "8", "--b-max-iter", "8", *extra]


def test_mosi_bert_command(tmp_path, capsys):
    text_dir, audio = make_files(tmp_path)
    bert = save_tiny_bert(tmp_path / "bert")
    out = tmp_path / "run"
    argv = _argv(text_dir, audio, bert, out, "--fusion", "cmbert", "--seeds", "0", "1")
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert list(summary) == ["cmbert"] and summary["cmbert"]["seeds"] == [0, 1]
    assert len(summary["cmbert"]["test_acc2_ref"]["values"]) == 2
    res = json.loads((out / "cmbert" / "seed0" / "result.json").read_text())
    assert res["test"]["n"] == COUNTS["test"] and res["selection"]["metric"] == "loss"
    assert res["epochs_run"] == 2 and res["health"]["degenerate"] is None
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["data"]["counts"] == COUNTS
    assert set(cfg["environment"]) >= {"torch_threads", "world_size", "dtype", "device_type", "model_code"}
    assert "acc2_ref" in (out / "summary.md").read_text()
    assert main(argv + ["--resume"]) == 0


def test_mosi_bert_deq(tmp_path):
    text_dir, audio = make_files(tmp_path)
    bert = save_tiny_bert(tmp_path / "bert")
    out = tmp_path / "run"
    # L = 10 is divisible by the default 5 GroupNorm groups of the DEQ blocks
    argv = _argv(text_dir, audio, bert, out, "--fusion", "deq", "--seeds", "0", "--epochs", "1")
    argv[argv.index("--max-seq-length") + 1] = "10"
    with open(audio, "rb") as fh:
        arrays = pickle.load(fh)
    with open(audio, "wb") as fh:
        pickle.dump(tuple(a[:, :10] for a in arrays), fh)
    assert main(argv) == 0
    res = json.loads((out / "deq" / "seed0" / "result.json").read_text())
    with (out / "deq" / "seed0" / "history.csv").open() as f:
        assert float(next(csv.DictReader(f))["train_solver_steps"]) > 0
    assert np.isfinite(res["test"]["mae"])


def test_mosi_bert_misaligned_audio(tmp_path, capsys):
    text_dir, audio = make_files(tmp_path)
    with open(audio, "rb") as fh:
        arrays = pickle.load(fh)
    with open(audio, "wb") as fh:
        pickle.dump((arrays[0], arrays[1][:-1], arrays[2]), fh)
    assert main(_argv(text_dir, audio, tmp_path / "nobert", tmp_path / "out")) == 2
    assert "dev split has 7 audio arrays but the text file has 8 rows" in capsys.readouterr().err


def test_mosi_bert_wrong_positions_and_missing_bert(tmp_path, capsys):
    text_dir, audio = make_files(tmp_path)
    assert main(_argv(text_dir, audio, tmp_path / "nobert", tmp_path / "o1")[:-4] + ["--max-seq-length", "50"]) == 2
    assert "12 positions, expected 50" in capsys.readouterr().err
    assert main(_argv(text_dir, audio, tmp_path / "nobert", tmp_path / "o2")) == 2
    assert "BERT folder not found" in capsys.readouterr().err
