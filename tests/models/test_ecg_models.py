"""1-D ECG models: shapes, registry metadata, LRP canonizers (invariance, removal) and conservation."""
import copy
import warnings

import pytest
import torch
from zennit.composites import EpsilonPlusFlat

from models import get_model, get_model_spec
from models.ecg import XResNet1d
from utils.lrp import get_attributor
from utils.lrp.composites import make_canonizers


def _small(name):
    """The registered architecture, or for xresnet1d50 the same blocks with a few channels (fast)."""
    if name == "tiny_cnn1d":
        return get_model(name, 3, in_channels=12)
    # 32 channels: with fewer, a 1x1 filter may see only zero inputs where its weights are positive, and
    # z+ then (rightly) drops the relevance of its negative output; real widths are 64-512
    model = XResNet1d(3, in_channels=12, layers=(1, 2, 1, 1), widths=(32, 32, 32, 32), stem=(16, 16, 32))
    model.model_name = name  # the spec (layers, canonizer) is that of the registered model
    return model.eval()


def _randomize(model):
    """Non-trivial BatchNorm statistics (including the zero-initialised last BN of each block)."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.3, 0.3)


@pytest.mark.parametrize("name", ["tiny_cnn1d", "xresnet1d50"])
def test_registered_signal_models(name):
    model = get_model(name, n_classes=5, in_channels=12)
    spec = get_model_spec(name)
    assert spec.modality == "signal" and spec.default_layer in spec.layer_names
    modules = dict(model.named_modules())
    assert all(layer in modules for layer in spec.layer_names)
    with torch.no_grad():
        assert model(torch.randn(2, 12, 250)).shape == (2, 5)


@pytest.mark.parametrize("name", ["tiny_cnn1d", "xresnet1d50"])
def test_canonizers_keep_outputs_and_are_removable(name):
    torch.manual_seed(0)
    model = _small(name).double()
    _randomize(model)
    reference = copy.deepcopy(model.state_dict())
    x = torch.randn(2, 12, 128, dtype=torch.float64)
    before = model(x)
    composite = EpsilonPlusFlat(canonizers=make_canonizers(get_model_spec(name).canonizer))
    with composite.context(model) as modified:
        during = modified(x)
        if name == "xresnet1d50":
            assert hasattr(model.layer1[0], "canonizer_sum")  # the residual sum is a layer now
    after = model(x)
    assert torch.allclose(before, during, rtol=1e-4, atol=1e-8)
    assert torch.equal(before, after) and not hasattr(model.layer1[0] if name == "xresnet1d50" else model,
                                                      "canonizer_sum")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in reference.items())


@pytest.mark.parametrize("name", ["tiny_cnn1d", "xresnet1d50"])
def test_lrp_through_get_attributor_conserves_relevance(name):
    torch.manual_seed(1)
    model = _small(name).double()
    _randomize(model)
    for module in model.modules():  # without biases, LRP-epsilon/z+ conserve the explained logit
        if isinstance(module, torch.nn.BatchNorm1d):
            module.bias.data.zero_()
            module.running_mean.zero_()
        elif getattr(module, "bias", None) is not None:
            module.bias.data.zero_()
    # scaled so that the logits of the few-channel model dwarf the epsilon of the LRP rules
    x = 100 * torch.randn(3, 12, 128, dtype=torch.float64)
    targets = torch.tensor([0, 2, 1])
    spec = get_model_spec(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fast backend may decline 1-D models and say so
        result = get_attributor(model).attribute(x, targets=targets, record_layers=spec.layer_names)
    assert result.heatmap.shape == x.shape
    logit = result.outputs[torch.arange(3), targets]
    assert torch.allclose(result.heatmap.flatten(1).sum(1), logit, rtol=1e-3, atol=1e-8)
    for layer in spec.layer_names:
        assert torch.allclose(result.relevances[layer].flatten(1).sum(1), logit, rtol=1e-3, atol=1e-8)
    assert all(p.requires_grad for p in model.parameters())
