"""Max pooling in channels-last order (models.pooling) computes exactly what nn.MaxPool2d computes."""
import pytest
import torch
from torch import nn

from models import get_model
from models.pooling import MaxPool2d, max_pool2d, pool_in_channels_last
from models.tiny import TinyVGG
from utils.lrp.attribution import get_attributor


def _with_ties(shape, seed=0):
    # ReLU outputs rounded to a coarse grid: many windows hold equal maxima (zeros, and ties above)
    return torch.relu(torch.randn(shape, generator=torch.Generator().manual_seed(seed))).mul(2).round()


@pytest.mark.parametrize("settings", [
    {"kernel_size": 2},
    {"kernel_size": 3, "stride": 2, "padding": 1},  # the ResNet stem's pooling
    {"kernel_size": 3, "stride": 2, "ceil_mode": True},
    {"kernel_size": 2, "dilation": 2},
])
def test_outputs_indices_and_gradients_are_bit_identical(settings):
    x = _with_ties((4, 5, 13, 11))
    plain, fast = nn.MaxPool2d(**settings, return_indices=True), MaxPool2d(**settings, return_indices=True)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    (out_a, idx_a), (out_b, idx_b) = plain(a), fast(b)
    assert torch.equal(out_a, out_b) and torch.equal(idx_a, idx_b)
    assert out_b.is_contiguous() and idx_b.is_contiguous()  # the next layer sees the usual layout
    weights = torch.randn(out_a.shape, generator=torch.Generator().manual_seed(1))
    (out_a * weights).sum().backward()
    (out_b * weights).sum().backward()
    assert torch.equal(a.grad, b.grad)
    # inputs the fast path leaves to PyTorch as they are: one unbatched image, channels-last already
    for other in (x[0], x.contiguous(memory_format=torch.channels_last)):
        assert torch.equal(max_pool2d(other, **settings), nn.functional.max_pool2d(other, **settings))


def test_get_model_pools_in_channels_last_and_trains_exactly_as_before():
    torch.manual_seed(0)
    plain = TinyVGG(2)
    model = get_model("tiny_vgg", 2)
    model.load_state_dict(plain.state_dict())
    assert not any(type(m) is nn.MaxPool2d for m in model.modules())
    assert sum(isinstance(m, MaxPool2d) for m in model.modules()) == 3
    assert model.state_dict().keys() == plain.state_dict().keys()  # checkpoints are unchanged
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 1] * 4)
    for net in (plain, model):
        net.train()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        for _ in range(3):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
    assert all(torch.equal(p, q) for p, q in zip(plain.parameters(), model.parameters()))


@pytest.mark.parametrize("backend", ["fast", "zennit"])
def test_heatmaps_are_those_of_the_plain_model(backend):
    model = get_model("tiny_vgg", 2)
    plain = TinyVGG(2)
    plain.load_state_dict(model.state_dict())
    plain.model_name = "tiny_vgg"
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    targets = torch.tensor([0, 1, 1, 0])
    ours = get_attributor(model.eval(), backend).attribute(x.clone(), targets).heatmap
    theirs = get_attributor(plain.eval(), backend).attribute(x.clone(), targets).heatmap
    assert ours.abs().sum() > 0 and torch.equal(ours, theirs)


def test_only_plain_max_pooling_is_swapped():
    model = nn.Sequential(nn.MaxPool2d(2), nn.MaxPool1d(2), nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True)))
    pool_in_channels_last(model)
    assert type(model[0]) is MaxPool2d and type(model[1]) is nn.MaxPool1d
    inner = model[2][0]
    assert type(inner) is MaxPool2d and (inner.kernel_size, inner.stride, inner.padding, inner.ceil_mode) == (3, 1, 1, True)
