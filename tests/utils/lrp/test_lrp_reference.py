"""LRP through the framework's interface: canonizer invariance, shapes, conservation."""
import copy

import pytest
import torch
from zennit.composites import EpsilonPlusFlat

from models import get_model, get_model_spec
from utils.lrp import get_attributor
from utils.lrp.composites import make_canonizers


def _randomize_batchnorm(model):
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.3, 0.3)


@pytest.mark.parametrize("name", ["tiny_vgg", "tiny_resnet"])
def test_canonizers_keep_outputs_and_are_removable(name):
    torch.manual_seed(0)
    model = get_model(name, 3).double()
    _randomize_batchnorm(model)
    reference = copy.deepcopy(model.state_dict())
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    before = model(x)
    composite = EpsilonPlusFlat(canonizers=make_canonizers(get_model_spec(name).canonizer))
    with composite.context(model) as modified:
        during = modified(x)
    after = model(x)
    # zennit leaves the merged BatchNorm as x / sqrt(1 + eps): a relative change of ~5e-6 per layer
    assert torch.allclose(before, during, rtol=1e-4, atol=1e-8)
    assert torch.equal(before, after)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in reference.items())


def _zero_biases(model):
    for name, param in model.named_parameters():
        if name.endswith("bias") or "class_token" in name or "pos_embedding" in name:
            param.data.zero_()


@pytest.mark.parametrize("name,tolerance", [("tiny_vgg", 1e-3), ("tiny_resnet", 1e-3), ("tiny_vit", 0.05)])
def test_heatmap_shape_and_conservation(name, tolerance):
    torch.manual_seed(1)
    model = get_model(name, 3).double()
    _zero_biases(model)
    if name == "tiny_vit":
        torch.nn.init.normal_(model.heads.head.weight)  # torchvision zero-initialises the head
    x = torch.randn(4, 3, 32 if name != "tiny_vit" else 64, 32 if name != "tiny_vit" else 64, dtype=torch.float64)
    targets = torch.tensor([0, 1, 2, 0])
    spec = get_model_spec(name)
    result = get_attributor(model, backend="zennit" if name != "tiny_vit" else "auto").attribute(
        x, targets=targets, record_layers=spec.layer_names)
    assert result.heatmap.shape == x.shape
    logit = result.outputs[torch.arange(4), targets]
    total = result.heatmap.flatten(1).sum(1)
    assert torch.allclose(total, logit, rtol=tolerance, atol=1e-8), (total, logit)
    for layer in spec.layer_names:  # every recorded layer also holds the explained logit
        assert torch.allclose(result.relevances[layer].flatten(1).sum(1), logit, rtol=tolerance, atol=1e-8)


def test_attribution_restores_trainable_parameters():
    model = get_model("tiny_vgg", 2)
    get_attributor(model, backend="zennit").attribute(torch.randn(1, 3, 32, 32), targets=[0])
    assert all(p.requires_grad for p in model.parameters())
