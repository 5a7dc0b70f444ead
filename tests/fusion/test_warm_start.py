"""Warm starts of DEQFusion: an explicit start (z0=) and the per-sample fixed-point cache (sample_ids=)."""

import pytest
import torch

from deqfusion import DEQFusion

TIGHT = dict(f_tol=1e-11, f_max_iter=200, b_tol=1e-11, b_max_iter=200)


def _setup(seed=0, **kw):
    torch.manual_seed(seed)
    # the paper's initialisation, scaled down to a contractive map in which every slot depends on the state
    m = DEQFusion([5, 7, 8], 8, init="reference", **{**TIGHT, **kw}).double()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() >= 2 and not name.startswith("proj"):
                p.mul_(0.5)
    g = torch.Generator().manual_seed(seed + 10)
    xs = [torch.randn(8, d, generator=g, dtype=torch.float64, requires_grad=True) for d in (5, 7, 8)]
    return m, xs


def _grads(m, xs, **kw):
    m.zero_grad()
    for x in xs:
        x.grad = None
    out, info = m(xs, **kw)
    out.square().sum().backward()
    return out.detach(), info, [p.grad.clone() for p in m.parameters()], [x.grad.clone() for x in xs]


def test_start_at_the_fixed_point_converges_at_once_with_the_same_output_and_gradients():
    m, xs = _setup()
    out0, info0, gp0, gx0 = _grads(m, xs)
    assert info0.forward.nstep > 5 and info0.forward.status == "converged"
    out1, info1, gp1, gx1 = _grads(m, xs, z0=info0.forward.z)
    assert info1.forward.nstep <= 2 and info1.forward.status == "converged"
    torch.testing.assert_close(out1, out0, rtol=1e-9, atol=1e-10)
    for a, b in zip(gp1 + gx1, gp0 + gx0):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_z0_of_the_wrong_shape_is_refused():
    m, xs = _setup()
    with pytest.raises(ValueError, match="z0 must be a tensor of the state's shape"):
        m(xs, z0=torch.zeros(8, 8))


def test_cache_reuses_each_samples_fixed_point_in_training_only():
    m, xs = _setup(f_tol=1e-6, b_tol=1e-6)
    xs = [x.detach() for x in xs]
    with pytest.raises(ValueError, match="warm start is off"):
        m(xs, sample_ids=torch.arange(8))
    cache = m.enable_warm_start(20)
    ids = torch.arange(3, 11)
    _, cold = m(xs, sample_ids=ids)
    assert len(cache) == 8
    out_warm, warm = m(xs, sample_ids=ids)
    assert warm.forward.nstep <= 2 < cold.forward.nstep
    # a batch of cached and new samples: the new ones start from zeros
    _, mixed = m([x[:4] for x in xs], sample_ids=torch.tensor([3, 4, 15, 16]))
    assert mixed.forward.status == "converged" and len(cache) == 10
    # evaluation does not read the cache by default (its results do not depend on what was trained before)
    m.eval()
    out_eval, ev = m(xs, sample_ids=ids)
    assert ev.forward.nstep == cold.forward.nstep
    torch.testing.assert_close(out_eval, out_warm, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"sample_ids must lie in \[0, 20\)"):
        m.train()(xs, sample_ids=torch.arange(15, 23))
    with pytest.raises(TypeError, match="integers"):
        m(xs, sample_ids=torch.arange(8.0))


def test_cache_is_dropped_on_load_state_dict_and_on_a_dtype_change():
    m, xs = _setup(f_tol=1e-6, b_tol=1e-6)
    xs = [x.detach() for x in xs]
    cache = m.enable_warm_start(8)
    ids = torch.arange(8)
    _, cold = m(xs, sample_ids=ids)
    assert len(cache) == 8
    # loaded weights make every stored fixed point stale
    m.load_state_dict(m.state_dict())
    assert len(cache) == 0
    _, again = m(xs, sample_ids=ids)
    assert again.forward.nstep == cold.forward.nstep
    # a float32 module: the float64 entries do not fit and are not used
    m.float()
    _, f32 = m([x.float() for x in xs], sample_ids=ids)
    assert f32.forward.nstep > 2 and cache.store.dtype == torch.float32
    # state_dict holds no cache entry (the cache is not part of the model's state)
    assert not any("cache" in k for k in m.state_dict())


def test_a_nonfinite_row_is_not_stored():
    m, xs = _setup(f_tol=1e-6, b_tol=1e-6, on_nonfinite="return")
    xs = [x.detach() for x in xs]
    cache = m.enable_warm_start(8)
    with torch.no_grad():
        m.fusion.fuse_weight.fill_(float("inf"))
    m(xs, sample_ids=torch.arange(8))
    assert len(cache) == 0
