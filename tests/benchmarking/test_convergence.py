import pytest
import torch

from deqfusion import DEQFusion
from deqfusion.benchmarking.convergence import (
    JOINT,
    band_summary,
    component_names,
    residual_traces,
    steps_to_reach,
)
from deqfusion.benchmarking.step import scale_fusion_weights_
from deqfusion.deq.solvers import solve


def _module(**kw):
    torch.manual_seed(0)
    m = DEQFusion([12, 12, 12], 12, names=["a", "b", "c"], init="reference", groups=4, **kw)
    scale_fusion_weights_(m, 0.1)  # contractive: plain iteration converges
    return m, [torch.randn(5, 12) for _ in range(3)]


def test_traces_per_component_and_joint_match_the_solver():
    m, xs = _module()
    t = residual_traces(m, xs, solver="fixed_point_iter", max_iter=25)
    assert list(t) == ["a", "b", "c", "fusion", JOINT]
    assert all(v.shape == (25, 5) for v in t.values())
    # from zeros, F(0) - 0 = F(0): every component's first relative residual is 1
    for name in ["a", "b", "c", "fusion", JOINT]:
        assert torch.allclose(t[name][0], torch.ones(5), atol=1e-6)
    # the joint trace is the solver's own; the components combine to it (squared absolute residuals add up)
    x, x_fuse, mask = m.inject(xs, None)
    ref = solve(m.make_map(x, x_fuse, mask), m.initial_state(x_fuse), solver="fixed_point_iter", max_iter=25, tol=0)
    assert torch.allclose(t[JOINT], ref.rel_trace)
    assert max(float(t[n][-1].max()) for n in ["a", "b", "c", "fusion"]) < 1e-3  # converged
    assert float(t["fusion"][-1].mean()) < float(t["fusion"][3].mean())


def test_anderson_uses_the_module_settings_and_fuse_only_has_one_component():
    m, xs = _module(anderson_m=3)
    aa = residual_traces(m, xs, solver="anderson", max_iter=8)
    x, x_fuse, mask = m.inject(xs, None)
    ref = solve(m.make_map(x, x_fuse, mask), m.initial_state(x_fuse), solver="anderson", max_iter=8, tol=0, m=3,
                lam=m.anderson_kwargs["lam"])
    assert torch.allclose(aa[JOINT], ref.rel_trace)
    assert float(aa[JOINT][-1].mean()) < 1e-4
    m1, _ = _module(unimodal=False)
    assert component_names(m1) == ["fusion"]
    assert list(residual_traces(m1, xs, solver="broyden", max_iter=4)) == ["fusion", JOINT]


def test_band_summary_and_steps_to_reach():
    t = {"x": torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.1, 0.1, 0.1, float("nan")]])}
    s = band_summary(t, band=0.5)["x"]
    assert s["mean"] == [2.5, pytest.approx(0.1)] and s["median"][0] == 2.5
    assert s["lo"][0] == pytest.approx(1.75) and s["hi"][0] == pytest.approx(3.25)
    assert steps_to_reach([1.0, 0.05, 0.005, 0.0005], (1e-1, 1e-2, 1e-4)) == {"0.1": 2, "0.01": 3, "0.0001": None}
    with pytest.raises(ValueError):
        band_summary(t, band=1.0)


def test_rejects_non_deq_fusions():
    from deqfusion.fusion import build_fusion

    with pytest.raises(TypeError, match="DEQ-type"):
        residual_traces(build_fusion("concat", [4, 4], 4), [torch.randn(2, 4)] * 2)
