import pytest
import torch

from deqfusion.models.maxout import Maxout, MaxoutMLP


def test_maxout_takes_the_max_of_the_pieces():
    layer = Maxout(3, 2, pool=3)
    x = torch.randn(4, 3)
    pieces = layer.linear(x).view(4, 2, 3)
    assert torch.equal(layer(x), pieces.max(dim=2).values)
    with pytest.raises(ValueError, match="pool"):
        Maxout(3, 2, pool=0)


def test_maxout_mlp_layers_of_the_mmimdb_encoders():
    text = MaxoutMLP(300, [512, 512])
    image = MaxoutMLP(4096, [1024, 512])
    shapes = [tuple(m.linear.weight.shape) for m in text.modules() if isinstance(m, Maxout)]
    assert shapes == [(1024, 300), (1024, 512)]
    shapes = [tuple(m.linear.weight.shape) for m in image.modules() if isinstance(m, Maxout)]
    assert shapes == [(2048, 4096), (1024, 1024)]
    norms = [m.num_features for m in image.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms == [4096, 1024, 512]
    drops = [m.p for m in image.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.3, 0.3]
    assert image.out_dim == 512 and image(torch.randn(5, 4096)).shape == (5, 512)
    head = MaxoutMLP(10, [8], out_dim=3)
    assert head(torch.randn(4, 10)).shape == (4, 3) and head.out_dim == 3


def test_maxout_mlp_rejects_bad_input():
    with pytest.raises(ValueError, match=r"expects \(batch, 300\)"):
        MaxoutMLP(300, [16])(torch.randn(4, 299))
    with pytest.raises(ValueError, match="at least one hidden layer"):
        MaxoutMLP(3, [])
