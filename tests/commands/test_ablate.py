import csv
import json

import pytest

from deqfusion.cli import main
from deqfusion.errors import UserError
from deqfusion.experiments.ablation import VARIANTS, resolve_variants
from deqfusion.training.checkpoint import load_checkpoint


def _argv(data, out, *extra):
    return ["ablate", "--data-dir", str(data), "--out", str(out), "--seeds", "0", "--variants", "full",
            "no-purify", "fuse-only", "unrolled-k2", "phantom", "--omics-args", "--epochs 2 --hidden 8 --eval-every 1",
            "--mosi-args", "--epochs 1 --hidden 8 --patience 1 --f-max-iter 4 --b-max-iter 4", "--threads", "1",
            "--no-progress", *extra]


def test_ablation_runs_both_datasets_and_writes_one_table(shared_data_dir, tmp_path, capsys):
    out = tmp_path / "abl"
    assert main(_argv(shared_data_dir, out)) == 0
    with open(out / "per_seed.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["dataset"], r["variant"]) for r in rows] == [
        (ds, v) for ds in ("rosmap", "mosi") for v in ("full", "no-purify", "fuse-only", "unrolled-k2", "phantom")]
    by = {(r["dataset"], r["variant"]): r for r in rows}
    # the variants' options reached the models
    assert json.loads(by["rosmap", "no-purify"]["options"])["purify"] is False
    assert json.loads(by["mosi", "fuse-only"]["options"])["unimodal"] is False
    assert json.loads(by["mosi", "unrolled-k2"]["options"]) == {"unrolled_steps": 2}
    # the default backward is the implicit one on both datasets: the phantom variant is trained on both
    for ds in ("rosmap", "mosi"):
        assert by[ds, "phantom"]["same_as"] == ""
        assert json.loads(by[ds, "phantom"]["options"])["b_mode"] == "phantom"
    for r in rows:
        assert 0 <= float(r["acc" if r["dataset"] == "rosmap" else "acc2_neg_pos"]) <= 1
    assert (out / "rosmap" / "deq_purify-False" / "seed0" / "result.json").is_file()
    assert (out / "rosmap" / "deq_b_mode-phantom_phantom_steps-5" / "seed0" / "result.json").is_file()
    assert "best" in load_checkpoint(out / "mosi" / "fuse-only" / "seed0" / "checkpoint.pt")
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert summary["mosi"]["full"]["mae"]["values"] == [float(by["mosi", "full"]["mae"])]
    md = (out / "summary.md").read_text()
    assert "| phantom |" in md and "MOSI T+A+V MAE" in md
    assert md.count("\n| ") == 1 + 5  # header + one row per variant
    assert (out / "summary.csv").read_text().count("\n") == 1 + 10
    capsys.readouterr()
    # the same folder: refused without --resume, reused unchanged with it
    assert main(_argv(shared_data_dir, out)) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(_argv(shared_data_dir, out, "--resume")) == 0
    assert json.loads((out / "summary.json").read_text())["summary"] == summary


@pytest.mark.parametrize(("extra", "message"), [
    (["--variants", "magic"], "unknown variant"),
    (["--omics-args", "--seeds 3"], "must not set"),
    (["--mosi-args", "--no-such-option 1"], "unrecognised"),
])
def test_ablation_bad_options(shared_data_dir, tmp_path, capsys, extra, message):
    argv = ["ablate", "--data-dir", str(shared_data_dir), "--out", str(tmp_path / "x"), "--datasets", "mosi",
            "rosmap", *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before any run started


def test_resolve_variants_marks_duplicates():
    def base(fusion):
        return {"b_mode": "implicit"} if fusion == "deq" else {"unrolled_steps": 7}

    vs = resolve_variants(["full", "implicit", "unrolled-k4", "broyden"], base)
    assert [v["same_as"] for v in vs] == [None, None, None, None]  # implicit adds its budget, so it differs
    vs = resolve_variants(["full", "no-purify", "unrolled-k1"], base)
    assert vs[1]["options"] == {"b_mode": "implicit", "purify": False}
    assert vs[2]["options"] == {"unrolled_steps": 1}
    same = resolve_variants(["phantom", "full"], lambda f: dict(VARIANTS["phantom"][1]))
    assert same[1]["same_as"] == "phantom"
    with pytest.raises(UserError, match="twice"):
        resolve_variants(["full", "full"], base)
