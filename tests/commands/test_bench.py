import csv
import json

import pytest

from deqfusion.cli import main
from deqfusion.errors import UserError
from deqfusion.experiments.bench import expand_configs


def _argv(out, *extra):
    return ["bench", "--batch", "6", "--width", "8", "--modalities", "2", "--repeats", "1",
            "--fusions", "deq:f_max_iter=6,b_max_iter=6", "unrolled", "concat", "--solvers", "anderson", "broyden",
            "--b-modes", "implicit", "phantom", "--unrolled-steps", "1", "3", "--out", str(out), "--no-progress",
            *extra]


def test_bench_runs_end_to_end_and_writes_well_formed_outputs(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(_argv(out)) == 0
    printed = capsys.readouterr().out
    assert "| deq broyden/phantom,f_max_iter=6,b_max_iter=6 | train |" in printed
    res = json.loads((out / "results.json").read_text())
    rows = res["results"]
    # (4 deq + 2 unrolled + concat) x 2 modes
    assert len(rows) == 7 * 2
    assert not any(r.get("error") for r in rows)
    assert res["environment"]["load_average_before"] is not None
    for r in rows:
        assert r["median_s"] > 0 and r["mode"] in ("train", "inference")
        assert r["tensor_peak_mb"] >= 0 and r["tensor_kind"] == "cpu_dispatch_tracker"
    deq = [r for r in rows if r["fusion"] == "deq"]
    assert all(1 <= r["forward_steps"] <= 6 and r["forward_rel_residual_max"] >= 0 for r in deq)
    implicit_train = [r for r in deq if r["mode"] == "train" and r["options"]["b_mode"] == "implicit"]
    assert implicit_train and all(1 <= r["backward_steps"] <= 6 for r in implicit_train)
    assert {r["options"]["f_solver"] for r in deq} == {"anderson", "broyden"}
    unrolled = {r["label"]: r["forward_steps"] for r in rows if r["fusion"] == "unrolled"}
    assert unrolled == {"unrolled k=1": 1, "unrolled k=3": 3}
    # a deeper unrolled graph needs more memory to train
    mem = {(r["label"], r["batch"]): r["tensor_peak_mb"] for r in rows if r["mode"] == "train"}
    assert mem[("unrolled k=3", 6)] > mem[("unrolled k=1", 6)]
    with open(out / "results.csv") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(rows) and "median_s" in table[0]
    cfg = json.loads((out / "config.json").read_text())
    assert len(cfg["configurations"]) == 7 and cfg["environment"]["load_average_after"] is not None
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "summary.md").read_text().count("\n") == len(rows) + 2
    # the same folder again is refused
    assert main(_argv(out)) == 2
    assert "already holds" in capsys.readouterr().err


def test_bench_sequence_inputs_record_failures_per_row(tmp_path):
    out = tmp_path / "seq"
    argv = ["bench", "--batch", "3", "--width", "10", "--length", "10", "--modalities", "2", "--repeats", "1",
            "--fusions", "deq:groups=5,fusion_groups=1,f_max_iter=4,b_max_iter=4", "concat", "--solvers",
            "anderson", "--b-modes", "phantom", "--modes", "train", "--no-memory", "--no-plot", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    rows = json.loads((out / "results.json").read_text())["results"]
    ok = [r for r in rows if not r.get("error")]
    assert [r["fusion"] for r in ok] == ["deq"] and ok[0]["length"] == 10 and "tensor_peak_mb" not in ok[0]
    failed = [r for r in rows if r.get("error")]
    assert [r["fusion"] for r in failed] == ["concat"] and failed[0]["error"]
    assert not (out / "bench.png").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--fusions", "magic"], "unknown fusion"),
    (["--device", "cuda:0"], "cuda"),
    (["--modalities", "1"], "--modalities"),
    (["--unrolled-steps", "0"], ">= 1"),
])
def test_bench_bad_options(tmp_path, capsys, extra, message):
    import torch

    if extra[0] == "--device" and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    argv = ["bench", "--batch", "2", "--width", "4", "--out", str(tmp_path / "x"), "--no-progress", *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_expand_configs_respects_fixed_options():
    cfgs = expand_configs(["deq:f_solver=broyden", "unrolled:unrolled_steps=2", "sum"], ["anderson", "broyden"],
                          ["implicit", "phantom"], [1, 4])
    assert [c["label"] for c in cfgs] == ["deq broyden/implicit", "deq broyden/phantom", "unrolled k=2", "sum"]
    assert cfgs[0]["options"] == {"f_solver": "broyden", "b_mode": "implicit", "b_solver": "broyden"}
    with pytest.raises(UserError, match="twice"):
        expand_configs(["concat", "concat"], ["anderson"], ["implicit"], [1])
