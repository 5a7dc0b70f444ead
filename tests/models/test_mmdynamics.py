import math

import pytest
import torch
from torch import nn

from deqfusion.fusion.registry import FusionFactory, build_fusion
from deqfusion.models.mmdynamics import MMDynamicsClassifier, mmdynamics_loss, mmdynamics_objective


def _set(layer: nn.Linear, weight, bias):
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))


def _hand_model() -> MMDynamicsClassifier:
    """Two 1-feature modalities, width 1, two classes, weights chosen so every quantity is a round number."""
    m = MMDynamicsClassifier([1, 1], 2, hidden=1, dropout=0.0).eval()
    _set(m.informativeness[0], [[0.0]], [0.0])             # FI_0 = sigmoid(0) = 1/2
    _set(m.informativeness[1], [[0.0]], [math.log(3.0)])   # FI_1 = sigmoid(ln 3) = 3/4
    _set(m.encoders[0], [[2.0]], [0.0])                    # h_0 = relu(2 * 1 * 1/2) = 1
    _set(m.encoders[1], [[4.0]], [-1.0])                   # h_1 = relu(4 * 1 * 3/4 - 1) = 2
    _set(m.confidence[0], [[0.5]], [0.0])                  # c_0 = 1/2, e_0 = h_0 c_0 = 1/2
    _set(m.confidence[1], [[0.25]], [0.5])                 # c_1 = 1,   e_1 = 2
    _set(m.modality_classifiers[0], [[1.0], [-1.0]], [0.0, 0.0])  # l_0 = (1, -1)
    _set(m.modality_classifiers[1], [[0.0], [0.0]], [0.0, 0.0])   # l_1 = (0, 0)
    _set(m.classifier, [[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])      # logits = (e_0, e_1) = (1/2, 2)
    return m


def test_forward_and_loss_on_a_hand_checked_example():
    m = _hand_model()
    out = m([torch.ones(1, 1), torch.ones(1, 1)])
    assert out.feature_info[0].item() == pytest.approx(0.5) and out.feature_info[1].item() == pytest.approx(0.75)
    assert [c.item() for c in out.confidences] == pytest.approx([0.5, 1.0])
    assert out.modality_logits[0].tolist() == [[1.0, -1.0]]
    assert out.logits.tolist() == [[0.5, pytest.approx(2.0)]]
    y = torch.tensor([1])
    ce = math.log(1 + math.exp(-1.5))                       # CE of logits (1/2, 2) for class 1
    p0 = 1 / (1 + math.exp(2.0))                            # softmax(1, -1)[1]
    term0 = 0.5 + (0.5 - p0) ** 2 + math.log(1 + math.exp(2.0))   # mean FI_0 + MSE(c_0, p_0) + CE(l_0)
    term1 = 0.75 + (1.0 - 0.5) ** 2 + math.log(2.0)               # mean FI_1 + MSE(c_1, 1/2) + CE(l_1)
    loss, parts = mmdynamics_loss(out, y)                   # MM-Dynamics: the terms are added
    assert loss.item() == pytest.approx(ce + term0 + term1, rel=1e-6)
    assert parts["ce"] == pytest.approx(ce, rel=1e-6) and parts["jac"] == 0.0
    loss15, _ = mmdynamics_loss(out, y, growth=1.5)         # the DEQ paper's copy: x1.5 per modality
    assert loss15.item() == pytest.approx(1.5 * (1.5 * ce + term0) + term1, rel=1e-6)
    with pytest.raises(ValueError, match="growth"):
        mmdynamics_loss(out, y, growth=0.0)


def test_concatenation_classifier_sees_v_times_h_features_and_a_mask_zeroes_a_modality():
    m = _hand_model()
    assert m.classifier.in_features == 2 and m.fusion is None
    out = m([torch.ones(2, 1), torch.ones(2, 1)], mask=torch.tensor([[True, False], [False, True]]))
    assert out.logits.tolist() == [[0.5, 0.0], [0.0, pytest.approx(2.0)]]
    with pytest.raises(ValueError, match="mask should have shape"):
        m([torch.ones(2, 1), torch.ones(2, 1)], mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="no fusion arguments"):
        m([torch.ones(2, 1), torch.ones(2, 1)], sample_ids=torch.arange(2))


def test_parameters_are_drawn_in_the_published_order():
    # the published model creates all informativeness layers, then all confidence layers, all modality
    # classifiers, all encoders, then the classifier, each re-initialised Xavier-normal right after creation
    dims, h, c = [5, 3, 4], 6, 2
    torch.manual_seed(7)
    m = MMDynamicsClassifier(dims, c, hidden=h)
    torch.manual_seed(7)
    expected = []
    shapes = [(d, d) for d in dims] + [(h, 1)] * 3 + [(h, c)] * 3 + [(d, h) for d in dims] + [(3 * h, c)]
    for d_in, d_out in shapes:
        lin = nn.Linear(d_in, d_out)
        nn.init.xavier_normal_(lin.weight)
        expected.append(lin.weight.detach())
    got = [*m.informativeness, *m.confidence, *m.modality_classifiers, *m.encoders, m.classifier]
    assert len(got) == len(expected)
    for lin, w in zip(got, expected, strict=True):
        assert torch.equal(lin.weight, w)
        assert torch.count_nonzero(lin.bias) == 0
    # the Xavier-normal scale: std sqrt(2 / (fan_in + fan_out)) (loose check on the widest layer)
    big = MMDynamicsClassifier([400, 400], 2, hidden=300).encoders[0].weight
    assert big.std().item() == pytest.approx(math.sqrt(2 / 700), rel=0.05)


def test_dropout_is_active_in_training_only():
    torch.manual_seed(0)
    m = MMDynamicsClassifier([4, 3], 2, hidden=50, dropout=0.5)
    xs = [torch.rand(8, 4), torch.rand(8, 3)]
    m.train()
    a, b = m(xs).logits, m(xs).logits
    assert not torch.equal(a, b)
    m.eval()
    assert torch.equal(m(xs).logits, m(xs).logits)


def test_deq_fusion_variant_trains_and_adds_the_jacobian_term():
    torch.manual_seed(0)
    opts = {"injection": "sum", "f_max_iter": 8, "b_mode": "phantom", "phantom_steps": 2}
    m = MMDynamicsClassifier([5, 3, 4], 3, hidden=8, fusion=FusionFactory("deq", **opts))
    assert m.classifier.in_features == 8
    xs, y = [torch.rand(10, d) for d in (5, 3, 4)], torch.arange(10) % 3
    out = m(xs)
    l0, _ = mmdynamics_loss(out, y, growth=1.5)
    l1, p1 = mmdynamics_loss(out, y, growth=1.5, lambda_jac=20.0)
    assert p1["jac"] > 0
    assert l1.item() == pytest.approx(l0.item() + 20.0 * p1["jac"], rel=1e-5)
    l1.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    assert any(p.grad.abs().sum() > 0 for p in m.fusion.parameters())
    loss_fn, probs_fn, metrics_fn = mmdynamics_objective(3, growth=1.5, lambda_jac=20.0)
    m.eval()
    out = m(xs)
    assert loss_fn(out, y)[1]["jac"] == 0.0
    assert torch.allclose(probs_fn(out).sum(1), torch.ones(10))
    assert set(metrics_fn(y, probs_fn(out))) == {"acc", "f1_weighted", "f1_macro"}


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="at least 2 modalities"):
        MMDynamicsClassifier([4], 2)
    with pytest.raises(ValueError, match="at least 2 classes"):
        MMDynamicsClassifier([4, 4], 1)
    with pytest.raises(ValueError, match="dropout"):
        MMDynamicsClassifier([4, 4], 2, dropout=1.0)
    with pytest.raises(ValueError, match=r"fusion module takes in_dims \[4, 4\] to out_dim 4; this model needs"):
        MMDynamicsClassifier([4, 4], 2, hidden=3, fusion=build_fusion("deq", [4, 4], 4))
    with pytest.raises(ValueError, match="unknown fusion"):
        MMDynamicsClassifier([4, 4], 2, fusion="nonsense")
    m = MMDynamicsClassifier([4, 4], 2, hidden=3)
    with pytest.raises(ValueError, match=r"modality 1 should have shape \(B, 4\)"):
        m([torch.rand(2, 4), torch.rand(2, 5)])
    with pytest.raises(ValueError, match="expected 2 modalities"):
        m([torch.rand(2, 4)])


def test_modality_dropout_hides_modalities_from_the_fusion_in_training_only():
    torch.manual_seed(0)
    m = MMDynamicsClassifier([3, 3], 2, hidden=4, dropout=0.0, modality_dropout=0.5)
    xs = [torch.rand(200, 3), torch.rand(200, 3)]
    m.eval()
    full = m(xs).logits
    m.train()
    dropped = m(xs).logits
    changed = (dropped - full).abs().sum(1) > 0
    # a sample changes when exactly one of its two modalities is hidden (probability 1/2); with both hidden it
    # keeps both
    assert 0.35 < changed.float().mean().item() < 0.65
