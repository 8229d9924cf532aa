"""``check_explainable``: what differentiable LRP cannot explain is refused in one line naming the module."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from models import get_model_spec, list_models
from utils.errors import UserError
from utils.lrp import differentiable
from utils.lrp.differentiable import DifferentiableLRP, check_explainable, unsupported_reason

PROJECT_MODELS = [name for name in list_models() if get_model_spec(name).builder.__module__.startswith("models.")]


def _on_meta(name):
    """The registered model and an input, on the meta device: no memory, no initialisation, so even
    VGG16 costs nothing; the check needs the structure of one forward pass, not its values."""
    spec = get_model_spec(name)
    size = 224 if "vit" in name else 32
    with torch.device("meta"):
        model = spec.builder(n_classes=3, img_size=size, in_channels=3).eval()
        x = torch.empty((1, 3, 64) if spec.modality == "signal" else (1, 3, size, size))
    return model, x


@pytest.mark.parametrize("name", PROJECT_MODELS)
def test_every_registered_family_passes_unless_its_spec_refuses_it(name):
    model, x = _on_meta(name)
    reason = unsupported_reason(get_model_spec(name))
    if reason is not None:  # ViT: refused by its spec up front, and by the check too
        with pytest.raises(UserError, match=r"^encoder\.layers\.encoder_layer_0\.ln_1 \(LayerNorm\): "):
            check_explainable(model, x)
        return
    flow = check_explainable(model, x)
    assert flow.order and all(name in dict(model.named_modules()) for name in flow.order)
    if "densenet" in name:  # every dense layer's conv2 and every transition's conv feed concatenations
        convs = [n for n in flow.order if n.endswith(".conv2") or n.endswith("transition1.conv")
                 or n.endswith("transition2.conv") or n.endswith("transition3.conv")]
        assert flow.epsilon_outputs == tuple(convs) and convs
    else:  # every linear layer ends in a ReLU (or the output): the differentiable LRP is unchanged
        assert flow.epsilon_outputs == ()


def test_families_trained_through_differentiable_lrp_are_all_checked():
    trainable = {name for name in PROJECT_MODELS if unsupported_reason(get_model_spec(name)) is None}
    assert {"tiny_vgg", "tiny_resnet", "tiny_cnn1d", "tiny_densenet", "vgg16", "resnet18", "resnet50",
            "densenet121", "xresnet1d50"} <= trainable
    assert {"tiny_vit", "vit_b_16"}.isdisjoint(trainable)


# --- refusals -------------------------------------------------------------------------------------


class _GeluBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return F.gelu(self.conv(x))


class _Net(nn.Module):
    """conv -> ReLU -> ``block`` -> ``head(x)`` -> pool -> linear."""

    def __init__(self, block=None, head=None):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.block = block or nn.Identity()
        self.head = head or (lambda x: x)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.pool(self.head(self.block(self.stem(x)))).flatten(1))


def _refusal(model):
    with pytest.raises(UserError) as info:
        check_explainable(model, torch.randn(2, 3, 8, 8))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_functional_nonlinearity_is_refused_naming_its_module():
    message = _refusal(_Net(block=_GeluBlock()))
    assert message.startswith("block (_GeluBlock): its forward calls torch.nn.functional.gelu, a nonlinearity "
                              "that is not a module")
    assert "; " in message  # what to do
    assert _refusal(_Net(head=torch.tanh)).startswith("model (_Net): its forward calls torch.tanh")
    assert _refusal(_Net(head=lambda x: x.relu())).startswith("model (_Net): its forward calls Tensor.relu")
    assert "multiplies or divides activations by activations (mul)" in _refusal(_Net(head=lambda x: x * x))
    assert "(div)" in _refusal(_Net(head=lambda x: x / (x + 2.0)))


def test_torchvision_densenet_is_refused_for_its_functional_relu():
    from torchvision.models import DenseNet

    model = DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2, num_classes=2)
    message = _refusal(model)
    assert message.startswith("model (DenseNet): its forward calls torch.nn.functional.relu")


@pytest.mark.parametrize("layer", [nn.GELU(), nn.LayerNorm([4, 8, 8]), nn.LeakyReLU(), nn.Tanh()])
def test_a_layer_without_rule_is_refused_naming_it(layer):
    message = _refusal(_Net(block=nn.Sequential(nn.Conv2d(4, 4, 1), layer)))
    assert message.startswith(f"block.1 ({type(layer).__name__}): differentiable LRP has no rule for")


def test_linear_operations_between_modules_pass():
    """Not a check that refuses everything: sums, concatenations, scaling by constants and parameters."""

    class Linearish(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(4, 2, 1), nn.Conv2d(4, 2, 1)
            self.scale = nn.Parameter(torch.ones(1, 4, 1, 1))
            self.relu = nn.ReLU()

        def forward(self, x):
            y = torch.cat([self.a(x), self.b(x)], 1) * self.scale / 2 + x
            return self.relu(y[:, :, : x.shape[2]].reshape(x.shape) - 0.5 * x.mean())

    flow = check_explainable(_Net(block=Linearish()), torch.randn(2, 3, 8, 8))
    # a and b reach the ReLU through the sum and the concatenation: their epsilon is the ReLU's
    assert flow.epsilon_outputs == () and "block.a" in flow.order


def test_differentiable_lrp_refuses_before_any_heatmap_and_checks_once(monkeypatch):
    with pytest.raises(UserError, match=r"^block \(_GeluBlock\)"):
        DifferentiableLRP(_Net(block=_GeluBlock())).forward(torch.randn(2, 3, 8, 8))
    calls = []
    monkeypatch.setattr(differentiable, "trace", lambda model, x: calls.append(1) or _trace(model, x))
    lrp = DifferentiableLRP(_Net(block=nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU())), eps=0.01)
    for _ in range(3):
        logits = lrp.forward(torch.randn(2, 3, 8, 8))
        lrp.relevance(logits[:, 0])
    assert len(calls) == 1


_trace = differentiable.trace
