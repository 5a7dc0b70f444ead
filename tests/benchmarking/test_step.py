import json

import torch

from deqfusion.benchmarking.step import scale_fusion_weights_, solver_overhead, train_step_benchmark


def test_train_step_benchmark_reports_steps_and_residuals():
    r = train_step_benchmark("deq", batch=8, width=16, modalities=3, repeats=2, f_max_iter=12, b_max_iter=12)
    json.dumps(r)  # JSON-ready
    assert r["mode"] == "train" and len(r["times_s"]) == 2 and r["median_s"] > 0
    assert 1 <= r["forward_steps"] <= 12 and r["backward_steps"] >= 1
    assert 0 <= r["forward_rel_residual_mean"] <= r["forward_rel_residual_max"]
    inf = train_step_benchmark("unrolled", batch=8, width=16, modalities=2, repeats=1, inference=True,
                               unrolled_steps=3)
    assert inf["mode"] == "inference" and inf["forward_steps"] == 3
    cat = train_step_benchmark("concat", batch=8, width=16, modalities=2, repeats=1)
    assert "forward_steps" not in cat


def test_solver_overhead_fields():
    r = solver_overhead(batch=4, width=8, modalities=2, iters=3, repeats=1)
    assert r["feval_ms"] > 0 and r["vjp_ms"] > 0 and r["iteration_ms"] > 0
    assert set(r) >= {"bookkeeping_fraction", "solver"}


def test_scale_weights_only_touches_matrices():
    m = torch.nn.Linear(3, 3)
    w, b = m.weight.detach().clone(), m.bias.detach().clone()
    scale_fusion_weights_(m, 0.5)
    assert torch.allclose(m.weight, 0.5 * w) and torch.equal(m.bias, b)
