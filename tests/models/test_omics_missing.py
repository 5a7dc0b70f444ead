import pytest
import torch

from deqfusion.fusion.registry import FusionFactory
from deqfusion.models.omics import OmicsClassifier, omics_loss


def _xs(b=8, dims=(7, 5, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, d, generator=g) for d in dims]


@pytest.mark.parametrize("fusion", ["deq", "concat"])
def test_absent_modality_equals_masked_modality(fusion):
    torch.manual_seed(0)
    model = OmicsClassifier([7, 5, 6], 3, hidden=8, dropout=0.0,
                            fusion=FusionFactory("deq", f_max_iter=40) if fusion == "deq" else fusion).eval()
    xs = _xs()
    with torch.no_grad():
        absent = model([xs[0], xs[1], None])
        mask = torch.ones(8, 3, dtype=torch.bool)
        mask[:, 2] = False
        masked = model(xs, mask=mask)
        full = model(xs)
    assert torch.allclose(absent.logits, masked.logits, atol=1e-6)
    assert not torch.allclose(absent.logits, full.logits, atol=1e-4)  # the protein-like modality mattered
    assert absent.modality_logits[2] is None and absent.feature_info[2] is None
    loss, parts = omics_loss(absent, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    assert torch.isfinite(loss) and parts["confidence"] > 0


def test_modality_dropout_only_in_training_and_keeps_one():
    torch.manual_seed(0)
    model = OmicsClassifier([7, 5, 6], 3, hidden=8, fusion="concat", dropout=0.0, modality_dropout=0.6)
    feats = [torch.ones(500, 8)] * 3
    mask = model._drop_modalities(feats, None)
    assert mask.any(1).all()
    frac = 1 - mask.float().mean().item()
    # a sample that would lose every modality (p^3 = 0.216) keeps all: expected (1.8 - 3 * 0.216) / 3 = 0.384
    assert 0.34 < frac < 0.43
    partial = model._drop_modalities([feats[0], None, feats[2]], None)
    assert not partial[:, 1].any()
    xs = _xs()
    model.eval()
    with torch.no_grad():
        a, b = model(xs).logits, model(xs).logits
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="modality_dropout"):
        OmicsClassifier([7, 5], 3, modality_dropout=1.0)
