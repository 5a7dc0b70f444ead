import json

import pytest

from deqfusion.cli import main


@pytest.fixture(scope="module")
def omics_run(shared_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("omics") / "run"
    argv = ["omics", "--dataset", "rosmap", "--data-dir", str(shared_data_dir / "rosmap"), "--fusion", "concat",
            "deq:f_max_iter=8", "--seeds", "1", "--epochs", "2", "--eval-every", "1", "--hidden", "16",
            "--out", str(out), "--no-progress", "--threads", "1"]
    assert main(argv) == 0
    return out


def test_convergence_from_run_writes_png_pdf_json(omics_run, tmp_path, capsys):
    fig = tmp_path / "figs" / "conv.png"
    assert main(["plot", "convergence", "--run", str(omics_run), "--steps", "6", "--solvers", "anderson",
                 "broyden", "fixed_point_iter", "--out", str(fig)]) == 0
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    res = json.loads(fig.with_suffix(".json").read_text())
    assert res["fusion"] == "deq_f_max_iter-8" and res["seed"] == 1 and res["n_samples"] == 106
    assert res["components"] == ["mRNA", "DNA methylation", "miRNA", "fusion", "joint state"]
    for solver in ("anderson", "broyden", "fixed_point_iter"):
        for comp in res["components"]:
            c = res["curves"][solver][comp]
            assert len(c["mean"]) == 6 and c["mean"][0] == pytest.approx(1.0, abs=1e-5)
            assert all(lo <= md <= hi for lo, md, hi in zip(c["lo"], c["median"], c["hi"]))
    assert "weight-tied iteration" in capsys.readouterr().out


def test_convergence_from_checkpoint_and_errors(omics_run, tmp_path, capsys):
    fig = tmp_path / "c.png"
    ckpt = omics_run / "deq_f_max_iter-8" / "seed1" / "checkpoint.pt"
    assert main(["plot", "convergence", "--checkpoint", str(ckpt), "--steps", "3", "--out", str(fig)]) == 0
    res = json.loads(fig.with_suffix(".json").read_text())
    assert res["solvers"] == ["anderson", "fixed_point_iter"]  # the model's solver and the weight-tied iteration
    capsys.readouterr()
    bad = [
        (["--run", str(omics_run), "--fusion", "concat"], "no fixed point"),
        (["--run", str(omics_run), "--fusion", "nope"], "no fusion 'nope'"),
        (["--run", str(omics_run), "--seed", "7"], "seed 7"),
        (["--run", str(tmp_path)], "no config.json"),
        (["--checkpoint", str(tmp_path / "missing.pt")], "not found"),
        ([], "--run"),
    ]
    for extra, message in bad:
        assert main(["plot", "convergence", *extra, "--out", str(tmp_path / "x.png")]) == 2
        assert message in capsys.readouterr().err
    assert main(["plot", "convergence", "--run", str(omics_run), "--out", str(tmp_path / "x.svg")]) == 2
    assert ".png" in capsys.readouterr().err


def test_convergence_from_mosi_features_run(shared_data_dir, tmp_path):
    run = tmp_path / "mosi"
    assert main(["mosi-features", "--data-dir", str(shared_data_dir), "--out", str(run), "--fusion", "deq",
                 "--seeds", "0", "--epochs", "1", "--patience", "1", "--hidden", "8", "--f-max-iter", "4",
                 "--b-max-iter", "4"]) == 0
    fig = tmp_path / "m.png"
    assert main(["plot", "convergence", "--run", str(run), "--steps", "4", "--out", str(fig)]) == 0
    res = json.loads(fig.with_suffix(".json").read_text())
    assert res["components"] == ["text", "audio", "video", "fusion", "joint state"] and res["n_samples"] == 684
