"""The registered DenseNets compute torchvision's function, with torchvision's state-dict keys."""
import torch
from torch import nn
from torchvision.models import DenseNet

from models import get_model, get_model_spec

TINY = {"growth_rate": 4, "block_config": (2, 2, 2), "num_init_features": 8, "bn_size": 2}  # tiny_densenet's


def _randomized(model):
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.3, 0.3)
    return model


def test_same_function_and_state_dict_as_torchvision():
    torch.manual_seed(0)
    ours = _randomized(get_model("tiny_densenet", 5).double())
    reference = DenseNet(**TINY, num_classes=5).double().eval()
    reference.load_state_dict(ours.state_dict(), strict=True)  # the same keys, both ways
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert expected.abs().max() > 0
    assert torch.allclose(actual, expected, rtol=0, atol=1e-12)
    # every nonlinearity is a module, none of them in place (they would overwrite what LRP needs)
    relus = [name for name, m in ours.named_modules() if isinstance(m, nn.ReLU)]
    assert "features.relu5" in relus and not any(m.inplace for m in ours.modules() if isinstance(m, nn.ReLU))


def test_torchvision_weights_with_legacy_keys_load_as_pretrained_weights(tmp_path):
    """torchvision's published DenseNet files name dense-layer tensors 'norm.1', 'conv.2', ..."""
    torch.manual_seed(1)
    published = _randomized(DenseNet(**TINY, num_classes=1000))
    legacy = {}
    for key, value in published.state_dict().items():
        for old, new in (("norm1.", "norm.1."), ("norm2.", "norm.2."), ("conv1.", "conv.1."), ("conv2.", "conv.2.")):
            if ".denselayer" in key and old in key:
                key = key.replace(old, new)
        legacy[key] = value
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    torch.save(legacy, tmp_path / "densenet.pth")
    model = get_model("tiny_densenet", 2, pretrained_weights=tmp_path / "densenet.pth")
    own = model.state_dict()
    for key, value in published.state_dict().items():
        if not key.startswith("classifier"):  # the head has another class count: not loaded
            assert torch.equal(own[key], value), key


def test_other_input_channels_and_the_full_size_layers():
    model = get_model("tiny_densenet", 3, in_channels=1)
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    spec = get_model_spec("densenet121")
    assert spec.canonizer == "densenet" and spec.default_layer == "features.relu5"
    assert spec.layer_names == ("features.transition1", "features.transition2", "features.transition3",
                                "features.relu5")
