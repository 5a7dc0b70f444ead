"""The default (contractive) initialisation: the joint map contracts and the default solve converges, over a
sampled grid of the shapes a user may pass; the paper's initialisation stays available."""

import random

import pytest
import torch

from deqfusion import DEQFusion, spectral_radius
from deqfusion.deq import defaults as D
from deqfusion.fusion.blocks import default_groups
from deqfusion.fusion.deq_fusion import UNIMODAL_GAIN


def _grid(n_cases=14, seed=0):
    """Shapes drawn from the ranges the module documents: batch 1-1024, width 8-1024, 2-8 modalities, any groups
    setting, vectors and (B, C, L), with and without projections (large batch and large width not combined, to keep
    the test fast)."""
    rng = random.Random(seed)
    cases = [  # the extremes, always included
        dict(batch=1024, width=16, n=2, length=None, groups=None, proj=True),
        dict(batch=2, width=1024, n=3, length=None, groups=None, proj=False),
        dict(batch=1, width=8, n=8, length=None, groups=4, proj=True),
        dict(batch=2, width=8, n=3, length=4, groups=8, proj=False),
        dict(batch=3, width=30, n=2, length=5, groups=None, proj=True),
    ]
    while len(cases) < n_cases:
        width = rng.choice([8, 12, 30, 50, 64, 100, 128, 256])
        batch = rng.choice([1, 2, 7, 32, 128, 512]) if width <= 64 else rng.choice([1, 4, 16])
        length = rng.choice([None, None, 3, 10])
        if length is not None:
            batch = min(batch, 16)
        # one channel per group is valid for (B, C, L) inputs only (a clear error for vectors, tested below)
        divisors = [g for g in range(1, width + 1) if width % g == 0 and (length or width // g > 1)]
        cases.append(dict(batch=batch, width=width, n=rng.randint(2, 8), length=length,
                          groups=rng.choice([None, rng.choice(divisors)]), proj=rng.random() < 0.5))
    return cases


GRID = _grid()


def _build(case, seed, **kw):
    torch.manual_seed(seed)
    w = case["width"]
    dims = [w + 5 if case["proj"] and i % 2 == 0 else w for i in range(case["n"])]
    m = DEQFusion(dims, w, groups=case["groups"], **kw)
    g = torch.Generator().manual_seed(100 + seed)
    tail = () if case["length"] is None else (case["length"],)
    xs = [torch.randn(case["batch"], d, *tail, generator=g) for d in dims]
    return m, xs


@pytest.mark.parametrize("case", GRID, ids=lambda c: "b{batch}-w{width}-n{n}-L{length}-g{groups}-p{proj}".format(**c))
def test_contractive_at_init_and_converges_within_the_default_budget(case):
    for seed in (0, 1):
        m, xs = _build(case, seed)
        out, info = m(xs)
        assert info.forward.status == "converged", (seed, info.forward.summary())
        assert info.forward.nstep <= D.F_MAX_ITER
        assert bool((info.forward.rel_residual <= D.F_TOL).all())
        (out.square().mean() + D.JAC_LOSS_WEIGHT * info.jac_loss).backward()
        assert info.backward.status == "converged", (seed, info.backward.summary())
        # the joint map's spectral radius at the fixed point the module found
        with torch.no_grad():
            x, x_fuse, mask_nb = m.inject(xs, None)
        f = m.make_map(x, x_fuse, mask_nb)
        rho = spectral_radius(f, info.forward.z, n_iter=40)
        assert rho.shape == (case["batch"],)
        assert float(rho.max()) < 0.9, (seed, float(rho.max()))


def test_the_contractive_map_is_the_reference_map_with_three_tensors_changed():
    torch.manual_seed(0)
    ref = DEQFusion([6, 8, 8], 8, init="reference")
    torch.manual_seed(0)
    con = DEQFusion([6, 8, 8], 8)
    changed = {"blocks.w2", "blocks.gn3.weight", "fusion.fuse_weight"}
    for (name, p), (_, q) in zip(ref.named_parameters(), con.named_parameters()):
        if name in changed:
            assert not torch.equal(p, q), name
        else:
            assert torch.equal(p, q), name
    assert torch.count_nonzero(con.blocks.w2) == 0 and torch.count_nonzero(con.fusion.fuse_weight) == 0
    assert torch.all(con.blocks.gn3.weight == UNIMODAL_GAIN)
    # the reference initialisation is PyTorch's default for a Linear of that width, unit GroupNorm gains
    w2 = ref.blocks.w2.detach().abs()
    assert float(w2.max()) <= 8 ** -0.5 and float(w2.max()) > 0.1
    assert torch.all(ref.blocks.gn3.weight == 1)
    with pytest.raises(ValueError, match="init"):
        DEQFusion([6, 8], 8, init="zeros")


def test_contractive_init_trains_every_weight_after_one_step():
    torch.manual_seed(0)
    m = DEQFusion([5, 7], 8)
    xs = [torch.randn(16, 5), torch.randn(16, 7)]
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    for _ in range(2):  # the first step moves W2 and W_f off zero, the second reaches W1 and the gate through them
        opt.zero_grad()
        out, info = m(xs)
        (out[:, 0].sum() + info.jac_loss).backward()
        opt.step()
    assert torch.count_nonzero(m.blocks.w2) > 0 and torch.count_nonzero(m.fusion.fuse_weight) > 0
    for name in ("blocks.w1", "fusion.gate_weight"):
        assert dict(m.named_parameters())[name].grad.abs().sum() > 0, name


@pytest.mark.parametrize("width,want", [(8, 2), (12, 3), (16, 4), (30, 3), (50, 2), (7, 1), (1024, 4), (4, 1),
                                        (6, 1), (2, 1), (1, 1)])
def test_default_groups_divide_the_width(width, want):
    assert default_groups(width) == want


@pytest.mark.parametrize("width", [30, 50, 7])
def test_every_width_works_with_the_defaults(width):
    m = DEQFusion([5, width], width)
    out, info = m([torch.randn(4, 5), torch.randn(4, width)])
    assert out.shape == (4, width) and info.forward.status == "converged"
    assert m.blocks.gn1.groups == default_groups(width) and m.fusion.norm.num_groups == default_groups(width)


def test_one_channel_per_group_is_refused_for_vectors_only():
    m = DEQFusion([8, 8], 8, groups=8)
    with pytest.raises(ValueError, match="one channel per group"):
        m([torch.randn(3, 8), torch.randn(3, 8)])
    out, _ = m([torch.randn(3, 8, 5), torch.randn(3, 8, 5)])
    assert out.shape == (3, 8, 5)
