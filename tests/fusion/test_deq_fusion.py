import copy

import pytest
import torch
from torch.nn.functional import cosine_similarity

from deqfusion import DEQFusion, UnrolledFusion, build_fusion
from deqfusion.deq.solvers import ACCEPTS_OUT
from deqfusion.errors import DEQDivergenceError

TIGHT = dict(f_tol=1e-13, f_max_iter=400, b_tol=1e-13, b_max_iter=400)
#: the paper's initialisation and GroupNorm groups: the tests of the map's equations and gradients need weights that
#: couple every slot to the state (the default initialisation zeroes some of them)
PAPER = dict(init="reference", groups=4)


def contractive(module: DEQFusion, scale: float = 0.5) -> DEQFusion:
    """Scale the weight matrices of the DEQ blocks so that the joint map is contractive (checked in tests)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2 and not name.startswith("proj"):
                p.mul_(scale)
    return module


def inputs(bsz=6, dims=(5, 7, 16), seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(bsz, d, generator=g, dtype=dtype) for d in dims]


def make(seed=0, **kw):
    torch.manual_seed(seed)
    opts = dict(TIGHT, **PAPER)
    opts.update(kw)
    return contractive(DEQFusion([5, 7, 16], 16, **opts).double())


def flat_grads(module, xs):
    return torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None]
                     + [x.grad.flatten() for x in xs])


def loss_fn(out, weights):
    return (out * weights).sum()


def test_implicit_gradient_matches_long_unrolled_backprop():
    # plain iteration in the forward solve, so that the solve and the unrolled network reach the same fixed point
    # (the map is contractive near its fixed points, not globally: another solver may find another one)
    m = make(f_solver="fixed_point_iter")
    weights = torch.randn(6, 16, dtype=torch.float64)
    xs = [x.requires_grad_() for x in inputs()]
    out, info = m(xs)
    assert info.forward.status == "converged"
    loss_fn(out, weights).backward()
    g_impl = flat_grads(m, xs)
    assert info.backward.ran and info.backward.status == "converged"

    # same weights, weight-tied network unrolled far past convergence, ordinary backprop
    u = UnrolledFusion([5, 7, 16], 16, unrolled_steps=400, **PAPER).double()
    u.load_state_dict(m.state_dict())
    xs2 = [x.detach().clone().requires_grad_() for x in xs]
    out_u, _ = u(xs2)
    assert torch.allclose(out_u, out, atol=1e-10)
    loss_fn(out_u, weights).backward()
    g_unr = flat_grads(u, xs2)
    assert cosine_similarity(g_impl, g_unr, dim=0) > 0.999
    assert (g_impl - g_unr).norm() / g_unr.norm() < 1e-4


def test_implicit_gradient_matches_finite_differences():
    m = make(seed=1)
    m.eval()  # no Jacobian loss: the function is just the fixed point's output
    weights = torch.randn(6, 16, dtype=torch.float64)
    xs = [x.requires_grad_() for x in inputs(seed=1)]
    out, _ = m(xs)
    loss_fn(out, weights).backward()
    params = [p for p in m.parameters() if p.requires_grad] + xs
    g = torch.Generator().manual_seed(2)
    dirs = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
    analytic = sum((p.grad * d).sum() for p, d in zip(params, dirs))
    eps = 1e-6

    def loss_at(t):
        with torch.no_grad():
            saved = [p.detach().clone() for p in params]
            for p, d in zip(params, dirs):
                p.add_(t * d)
            val = loss_fn(m([x for x in xs])[0], weights)
            for p, s in zip(params, saved):
                p.copy_(s)
        return val

    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    assert abs(numeric - analytic) / abs(analytic) < 1e-4


def test_two_forwards_then_one_backward_equals_separate_backwards():
    m = make(seed=3, f_tol=1e-10, b_tol=1e-10)
    xa, xb = inputs(seed=3), inputs(seed=4)
    w = torch.randn(6, 16, dtype=torch.float64)

    def forward(xs, seed):
        torch.manual_seed(seed)  # the same Hutchinson probes in both runs
        return m(xs)

    (out_a, info_a), (out_b, info_b) = forward(xa, 0), forward(xb, 1)
    (loss_fn(out_a, w) + info_a.jac_loss + loss_fn(out_b, 2 * w) + info_b.jac_loss).backward()
    joint = [p.grad.clone() for p in m.parameters()]
    assert info_a.backward.ran and info_b.backward.ran and info_a.backward.calls == 1

    total = [torch.zeros_like(p) for p in m.parameters()]
    for xs, seed, scale in ((xa, 0, 1), (xb, 1, 2)):
        m.zero_grad()
        out, info = forward(xs, seed)
        (loss_fn(out, scale * w) + info.jac_loss).backward()
        total = [t + p.grad for t, p in zip(total, m.parameters())]
    for a, b in zip(joint, total):
        assert torch.allclose(a, b, rtol=1e-7, atol=1e-9)


def test_jacobian_loss_trains_the_weights_and_is_zero_in_eval():
    m = make(seed=5)
    out, info = m(inputs())
    assert info.jac_loss.requires_grad and info.jac_loss > 0
    info.jac_loss.backward()
    assert m.blocks.w1.grad is not None and m.blocks.w1.grad.abs().sum() > 0
    m.eval()
    _, info = m(inputs())
    assert float(info.jac_loss) == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_follows_dtype_and_modes(dtype):
    torch.manual_seed(0)
    m = DEQFusion([5, 7, 16], 16).to(dtype)
    xs = inputs(dtype=dtype)
    out, info = m(xs)
    assert out.dtype == dtype and out.shape == (6, 16) and out.requires_grad
    assert info.forward.rel_trace.shape[1] == 6
    assert info.forward.rel_residual.dtype == dtype
    m.eval()
    with torch.no_grad():
        out2, info2 = m(xs)
    assert not out2.requires_grad and info2.backward is None
    m.train()
    with torch.no_grad():
        out3, _ = m(xs)
    assert torch.allclose(out3, out.detach(), atol=1e-5 if dtype == torch.float32 else 1e-10)


def test_eval_and_train_outputs_agree():
    m = make(seed=6)
    xs = inputs()
    out_train, _ = m(xs)
    m.eval()
    out_eval, _ = m(xs)
    assert torch.allclose(out_train.detach(), out_eval, atol=1e-10)


def test_sequence_states_like_attention_maps():
    torch.manual_seed(0)
    m = DEQFusion([50, 50], 50, groups=5, fusion_groups=1, f_max_iter=30)
    a = torch.randn(3, 50, 50)
    b = torch.randn(3, 50, 50)
    out, info = m([a, b])
    assert out.shape == (3, 50, 50)
    (out.square().mean() + info.jac_loss).backward()
    assert m.blocks.w1.grad is not None
    # channel projection for sequences with another channel count
    m2 = DEQFusion([30, 50], 50, groups=5, fusion_groups=1, f_max_iter=10)
    out2, _ = m2([torch.randn(3, 30, 50), b])
    assert out2.shape == (3, 50, 50)


def test_dict_inputs_and_names():
    torch.manual_seed(0)
    m = DEQFusion([5, 7], 8, names=["text", "image"], f_max_iter=10)
    x = {"image": torch.randn(2, 7), "text": torch.randn(2, 5)}
    out, _ = m(x)
    out_list, _ = m([x["text"], x["image"]])
    assert torch.allclose(out, out_list)
    with pytest.raises(ValueError, match="'audio'"):
        m({"text": torch.randn(2, 5), "audio": torch.randn(2, 7)})


def test_bad_inputs_raise_named_errors():
    m = DEQFusion([5, 7], 8, f_max_iter=5)
    with pytest.raises(ValueError, match="batch sizes differ.*modality 0.*3 samples.*modality 1.*4"):
        m([torch.randn(3, 5), torch.randn(4, 7)])
    with pytest.raises(ValueError, match=r"modality 1 has shape \(3, 6\)"):
        m([torch.randn(3, 5), torch.randn(3, 6)])
    with pytest.raises(ValueError, match="at least 2 modalities"):
        DEQFusion([5], 8)
    with pytest.raises(ValueError, match="expected 2 modalities, got 1"):
        m([torch.randn(3, 5)])
    x = torch.randn(3, 7)
    x[1, 2] = float("nan")
    with pytest.raises(ValueError, match="modality 1 contains NaN"):
        m([torch.randn(3, 5), x])
    with pytest.raises(ValueError, match="divisible by groups"):
        DEQFusion([5, 7], 10, groups=4)
    with pytest.raises(ValueError, match="injection"):
        DEQFusion([5, 7], 8, injection="mean")
    with pytest.raises(TypeError, match="floating-point"):
        m([torch.ones(3, 5, dtype=torch.long), torch.randn(3, 7)])
    with pytest.raises(ValueError, match="same number of dimensions"):
        DEQFusion([5, 7], 8)([torch.randn(3, 5), torch.randn(3, 7, 2)])


def test_presence_mask_equals_module_without_that_modality():
    torch.manual_seed(0)
    full = contractive(DEQFusion([5, 7, 16], 16, f_tol=1e-12, f_max_iter=300, **PAPER).double())
    xs = inputs()
    mask = torch.ones(6, 3, dtype=torch.bool)
    mask[2:4, 1] = False  # modality 1 absent for samples 2 and 3
    out, _ = full(xs, mask=mask)
    # a module over modalities 0 and 2 only, with the same weights
    sub = DEQFusion([5, 16], 16, f_tol=1e-12, f_max_iter=300, **PAPER).double()
    sd = full.state_dict()
    keep = [0, 2]
    new = {}
    for k in sub.state_dict():
        src = sd[k]
        if k.startswith("proj."):
            idx = int(k.split(".")[1])
            src = sd[f"proj.{keep[idx]}." + ".".join(k.split(".")[2:])]
        elif k.startswith("blocks.") or k == "inj_weight":
            src = src[keep]
        new[k] = src
    sub.load_state_dict(new)
    out_sub, _ = sub([xs[0][2:4], xs[2][2:4]])
    assert torch.allclose(out[2:4], out_sub, atol=1e-9)
    # None for a whole-batch absent modality is the same as masking it everywhere
    out_none, _ = full([xs[0], None, xs[2]])
    mask_all = torch.ones(6, 3, dtype=torch.bool)
    mask_all[:, 1] = False
    out_mask, _ = full(xs, mask=mask_all)
    assert torch.allclose(out_none, out_mask)


def test_fuse_only_and_options():
    torch.manual_seed(0)
    for kw in [dict(unimodal=False), dict(purify=False), dict(injection="sum"), dict(fusion_norm="gn_relu"),
               dict(gate_activation="sigmoid"), dict(f_solver="broyden"), dict(b_mode="phantom", phantom_steps=2)]:
        m = DEQFusion([5, 7], 8, f_max_iter=20, **kw)
        out, info = m([torch.randn(4, 5), torch.randn(4, 7)])
        (out.sum() + info.jac_loss).backward()
        assert out.shape == (4, 8), kw
    assert DEQFusion([5, 7], 8, unimodal=False).blocks is None


def test_nonfinite_solve_raises():
    torch.manual_seed(0)
    m = DEQFusion([4, 4], 4, f_max_iter=10)
    with torch.no_grad():
        m.fusion.fuse_weight.fill_(float("inf"))
    with pytest.raises(DEQDivergenceError, match="non-finite"):
        m([torch.randn(2, 4), torch.randn(2, 4)])


def test_registry_and_unrolled():
    f = build_fusion("unrolled", [5, 7], 8, unrolled_steps=3)
    out, info = f([torch.randn(4, 5), torch.randn(4, 7)])
    assert info.forward.nstep == 3 and info.forward.rel_trace.shape == (3, 4)
    assert float(info.jac_loss) == 0.0
    with pytest.raises(ValueError, match="unknown fusion"):
        build_fusion("attention", [5, 7], 8)
    assert isinstance(copy.deepcopy(f), UnrolledFusion)


def _spec_map(m: DEQFusion, xs, z, mask=None):
    """SPEC section 1's F written out per modality and per gate, with torch.nn.functional only."""
    import torch.nn.functional as nnf

    def lin(v, w, b):  # a Linear on vectors, a 1x1 convolution on (B, C, L)
        return nnf.linear(v, w, b) if v.dim() == 2 else torch.einsum("oc,bcl->bol", w, v) + b[:, None]

    n = m.num_modalities
    proj = [p(x) for p, x in zip(m.proj, xs)]
    keep = [None if mask is None else mask[:, i].to(z.dtype).view(-1, *([1] * (z.dim() - 2))) for i in range(n)]
    proj = [p if k is None else p * k for p, k in zip(proj, keep)]
    if m.injection == "weighted":
        x_fuse = sum(m.inj_weight[i] * proj[i] for i in range(n)) + m.inj_bias
    else:
        x_fuse = sum(proj)
    zf = z[:, -1]
    new = []
    for i in range(n):
        if not m.unimodal:
            new.append(proj[i])
            continue
        bl = m.blocks
        gn = [(g.weight[i], g.bias[i]) for g in (bl.gn1, bl.gn2, bl.gn3)]
        a = nnf.relu(nnf.group_norm(lin(z[:, i], bl.w1[i], bl.b1[i]), bl.gn1.groups, *gn[0]))
        u = nnf.group_norm(lin(a, bl.w2[i], bl.b2[i]) + proj[i], bl.gn2.groups, *gn[1])
        zi = nnf.group_norm(nnf.relu(u + z[:, i]), bl.gn3.groups, *gn[2])
        new.append(zi if keep[i] is None else zi * keep[i])
    fb = m.fusion
    total = 0
    for i in range(n):
        if fb.purify:
            alpha = lin(new[i] + zf, fb.gate_weight, fb.gate_bias)
            if fb.gate_activation is not None:
                alpha = getattr(torch, fb.gate_activation)(alpha)
            term = zf * alpha
        else:
            term = new[i]
        total = total + (term if keep[i] is None else term * keep[i])
    u = lin(total, fb.fuse_weight, fb.fuse_bias) + x_fuse
    norm = fb.norm
    if fb.norm_order == "relu_gn":
        zf_new = nnf.group_norm(nnf.relu(u), norm.num_groups, norm.weight, norm.bias, norm.eps)
    else:
        zf_new = nnf.relu(nnf.group_norm(u, norm.num_groups, norm.weight, norm.bias, norm.eps))
    if not m.unimodal:
        return zf_new[:, None]
    return torch.stack(new + [zf_new], dim=1)


@pytest.mark.parametrize("kw", [
    {}, dict(injection="sum"), dict(fusion_norm="gn_relu"), dict(gate_activation="sigmoid"),
    dict(gate_activation="tanh"), dict(purify=False), dict(unimodal=False), dict(seq=True), dict(masked=True),
    dict(seq=True, masked=True), dict(masked=True, gate_activation="sigmoid"),
])
def test_map_matches_the_spec_equations(kw):
    kw = dict(kw)
    seq, masked = kw.pop("seq", False), kw.pop("masked", False)
    torch.manual_seed(1)
    m = DEQFusion([5, 7, 16], 16, **PAPER, **kw).double()
    with torch.no_grad():  # non-trivial affine parameters and injection weights
        for name, p in m.named_parameters():
            if p.dim() <= 2 and ("gn" in name or "norm" in name or "inj" in name):
                p.add_(0.3 * torch.randn_like(p))
    g = torch.Generator().manual_seed(3)
    shape = (4, 6) if seq else (4,)
    xs = [torch.randn(shape[0], d, *shape[1:], generator=g, dtype=torch.float64) for d in (5, 7, 16)]
    mask = None
    if masked:
        mask = torch.ones(4, 3, dtype=torch.bool)
        mask[1, 0] = mask[2, 2] = mask[3, 0] = mask[3, 1] = False
    x, x_fuse, mask_nb = m.inject(xs, mask)
    f = m.make_map(x, x_fuse, mask_nb)
    z = torch.randn(m.initial_state(x_fuse).shape, generator=g, dtype=torch.float64)
    got = f(z)
    want = _spec_map(m, xs, z, mask)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-12, rtol=1e-10), (got - want).abs().max()
    with torch.no_grad():  # the solvers' path: the blocks write into the packed output
        got_nograd = f(z)
        buf = torch.full_like(z, float("nan"))
        into = f(z, out=buf)  # Anderson's path: into the solver's buffer (solvers.ACCEPTS_OUT)
    assert torch.allclose(got_nograd, want.detach(), atol=1e-12, rtol=1e-10)
    assert into.data_ptr() == buf.data_ptr() and torch.equal(buf, got_nograd)
    assert getattr(f, ACCEPTS_OUT)
