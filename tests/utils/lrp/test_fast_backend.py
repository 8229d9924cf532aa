"""The fast LRP engine against the zennit reference: same numbers, same crp semantics.

Everything in float64 on small random models, with randomized BatchNorm statistics so that the
merge of BatchNorm into the preceding layer is really exercised.
"""
import dataclasses
import warnings

import pytest
import torch
from torch import nn
from torchvision.models import VGG
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.models.vgg import make_layers

from models import get_model, get_model_spec, register_model
from models.tiny import TinyResNet
from utils.lrp import get_attributor
from utils.lrp.fast import FastBackend

# --- test models ------------------------------------------------------------------------------


@register_model("test_cnn1d", layer_names=("3", "7", "11"), canonizer="merge_batchnorm", modality="signal")
def _cnn1d(n_classes, img_size=None, in_channels=3):
    """An ECG-style 1D CNN touching every 1D layer type the engine supports."""
    return nn.Sequential(
        nn.BatchNorm1d(in_channels),  # input normalization: nothing to merge into, gradient rule
        nn.Conv1d(in_channels, 8, 7, padding=3), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(8, 16, 5, padding="same", bias=False), nn.BatchNorm1d(16),
        nn.LeakyReLU(), nn.AvgPool1d(2),  # a signed input for the next z+ conv
        nn.Conv1d(16, 16, 3, stride=2, padding=2, dilation=2, groups=2), nn.BatchNorm1d(16), nn.ReLU(),
        nn.MaxPool1d(3, stride=2, padding=1),  # overlapping windows
        nn.AdaptiveAvgPool1d(3),
        nn.Flatten(), nn.Linear(48, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, n_classes))


@register_model("test_bottleneck_resnet", layer_names=("layer1", "layer2", "layer3", "layer4"), canonizer="resnet")
def _bottleneck_resnet(n_classes, img_size=32, in_channels=3):
    """torchvision's ResNet with one narrow Bottleneck per stage (stem 8 channels, widths 4-32).
    The shell is built on the meta device, the small stages with torchvision's own ``_make_layer``."""
    with torch.device("meta"):
        model = ResNet(Bottleneck, [1, 1, 1, 1], num_classes=n_classes)
    model.inplanes = 8
    model.conv1, model.bn1 = nn.Conv2d(in_channels, 8, 7, 2, 3, bias=False), nn.BatchNorm2d(8)
    model.layer1 = model._make_layer(Bottleneck, 4, 1)
    model.layer2 = model._make_layer(Bottleneck, 8, 1, stride=2)
    model.layer3 = model._make_layer(Bottleneck, 16, 1, stride=2)
    model.layer4 = model._make_layer(Bottleneck, 32, 1, stride=2)
    model.fc = nn.Linear(32 * Bottleneck.expansion, n_classes)
    return model


def _small_vgg(batch_norm):
    def build(n_classes, img_size=32, in_channels=3):
        """torchvision's VGG class with a small ``features`` and ``classifier``. The shell is built on
        the meta device: its stock classifier alone has 100M parameters."""
        with torch.device("meta"):
            model = VGG(nn.Sequential(), num_classes=n_classes, init_weights=False)
        model.features = make_layers([8, "M", 16, 16, "M", 16], batch_norm=batch_norm)
        model.avgpool = nn.AdaptiveAvgPool2d(3)  # 8x8 -> 3x3: overlapping adaptive windows
        model.classifier = nn.Sequential(nn.Linear(16 * 9, 32), nn.ReLU(), nn.Dropout(), nn.Linear(32, n_classes))
        return model

    return build


register_model("test_small_vgg", layer_names=("features.1", "features.6"), canonizer="vgg")(_small_vgg(False))
register_model("test_small_vgg_bn", layer_names=("features.2", "features.9"), canonizer="vgg")(_small_vgg(True))


@register_model("test_resnet_no_canonizer", layer_names=("layer1", "layer2", "layer3"))
def _resnet_no_canonizer(n_classes, img_size=32, in_channels=3):
    """Without canonizer zennit neither merges BatchNorm nor splits the residual sum."""
    return TinyResNet(n_classes, in_channels)


@register_model("test_groupnorm_cnn", layer_names=("2",), canonizer="merge_batchnorm")
def _groupnorm_cnn(n_classes, img_size=32, in_channels=3):
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, n_classes))


N_CLASSES = 5


def _model(name, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = get_model(name, N_CLASSES, **kwargs).double()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.3, 0.3)
    return model


def _input(name, n=2, size=16):
    shape = (n, 3, 96) if get_model_spec(name).modality == "signal" else (n, 3, size, size)
    return torch.randn(shape, dtype=torch.float64)


def _both(model, x, composite=None, **kwargs):
    reference = get_attributor(model, backend="zennit", composite=composite).attribute(x, **kwargs)
    fast = get_attributor(model, backend="fast", composite=composite).attribute(x, **kwargs)
    return reference, fast


def assert_close(actual, expected, rtol=1e-5):
    """Equal up to ``rtol`` relative to the largest magnitude of ``expected``."""
    assert actual.shape == expected.shape
    scale = expected.abs().max().clamp_min(1e-30)
    assert ((actual - expected).abs().max() / scale).item() <= rtol


def assert_same_attribution(reference, fast, doubled=()):
    """``doubled``: condition layers, at which crp accumulates the relevance twice (see below)."""
    assert_close(fast.heatmap, reference.heatmap)
    assert_close(fast.outputs, reference.outputs)
    assert fast.relevances.keys() == reference.relevances.keys()
    for name in reference.relevances:
        factor = 2 if name in doubled else 1
        assert_close(factor * fast.relevances[name], reference.relevances[name])
        assert_close(fast.activations[name], reference.activations[name])


# --- plain attribution ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny_vgg", "tiny_resnet", "test_small_vgg", "test_small_vgg_bn",
                                  "test_bottleneck_resnet", "test_cnn1d", "test_resnet_no_canonizer"])
def test_heatmap_and_layer_relevances_equal_zennit(name):
    model, x = _model(name), _input(name)
    assert FastBackend.supports(model, get_model_spec(name))
    reference, fast = _both(model, x, targets=[1, 3], record_layers=get_model_spec(name).layer_names)
    assert reference.heatmap.abs().sum() > 0
    assert_same_attribution(reference, fast)


def _small_xresnet1d(n_classes, img_size=None, in_channels=3):
    from models.ecg import XResNet1d
    return XResNet1d(n_classes, in_channels, layers=(1, 1, 1, 1), widths=(4, 8, 8, 8), stem=(8, 8, 8))


register_model("test_small_xresnet1d", layer_names=("layer1", "layer2", "layer3", "layer4"), canonizer="xresnet1d",
               modality="signal")(_small_xresnet1d)


@pytest.mark.parametrize("name", ["tiny_cnn1d", "test_small_xresnet1d"])
def test_registered_signal_models_equal_zennit(name):
    model, x = _model(name), _input(name)
    reference, fast = _both(model, x, targets=[1, 3], record_layers=get_model_spec(name).layer_names)
    assert_same_attribution(reference, fast)


@pytest.mark.parametrize("name,record", [
    ("tiny_vgg", ["features.0", "features.1", "features.2", "features.4"]),
    ("tiny_resnet", ["conv1", "bn1", "layer2.conv1", "layer2.bn1", "layer2.downsample.0"]),
])
def test_recording_inside_a_merged_conv_batchnorm_pair(name, record):
    # the conv output is then materialized: zennit's leftover BatchNorm factor stays separate
    model, x = _model(name), _input(name)
    reference, fast = _both(model, x, targets=[1, 3], record_layers=record)
    assert_same_attribution(reference, fast)


@pytest.mark.parametrize("name", ["tiny_resnet", "test_cnn1d"])
def test_epsilon_plus_without_flat_first_layer_equals_zennit(name):
    # the first conv then sees the raw (signed) input: the z+ rule's negative half is used
    model, x = _model(name), _input(name)
    reference, fast = _both(model, x, composite="epsilon_plus", targets=[0, 2],
                            record_layers=get_model_spec(name).layer_names)
    assert_same_attribution(reference, fast)


@pytest.mark.parametrize("name", ["tiny_vgg", "tiny_resnet", "test_small_vgg_bn", "test_bottleneck_resnet",
                                  "test_cnn1d"])
def test_alpha2_beta1_equals_zennit(name):
    # test_cnn1d: a LeakyReLU gives the next conv a signed input, so both halves of alpha-beta are used
    model, x = _model(name), _input(name)
    assert FastBackend.supports(model, dataclasses.replace(get_model_spec(name), composite="epsilon_alpha2_beta1_flat"))
    reference, fast = _both(model, x, composite="epsilon_alpha2_beta1_flat", targets=[1, 3],
                            record_layers=get_model_spec(name).layer_names)
    assert reference.heatmap.abs().sum() > 0
    assert_same_attribution(reference, fast)


def test_alpha2_beta1_from_a_start_layer_equals_crp():
    # what CAV-conditioned localization computes
    model, x = _model("tiny_vgg"), _input("tiny_vgg")
    reference, fast = _both(model, x, composite="epsilon_alpha2_beta1_flat", start_layer="features.10",
                            init_rel=lambda a: a.clamp(min=0) * 2, record_layers=["features.2"])
    assert_same_attribution(reference, fast)


def test_auto_picks_fast_for_supported_models():
    assert isinstance(get_attributor(_model("tiny_vgg")), FastBackend)


# --- concept conditions (zennit-crp semantics) -------------------------------------------------
# crp keeps the relevance of condition layers in `.grad`, which its partial backward passes
# (exclude_parallel=True) fill twice: zennit reports twice the relevance at those layers. The
# fast backend reports the relevance itself; everything else, the heatmap included, is equal.


def _active_channels(model, x, layer, k=2):
    """Channels with the largest activation per sample, so conditions select real relevance."""
    acts = get_attributor(model, backend="fast").attribute(x, targets=[0] * len(x), record_layers=[layer])
    scores = acts.activations[layer].flatten(2).sum(2) if acts.activations[layer].dim() > 2 \
        else acts.activations[layer]
    return [row.topk(k).indices.tolist() for row in scores]


@pytest.mark.parametrize("name,layers,record", [
    ("tiny_vgg", ["features.10"], ["features.2", "features.14"]),
    ("tiny_resnet", ["layer2"], ["layer1", "layer3"]),
    # inside a block: crp's exclude_parallel drops the relevance of the parallel shortcut
    ("tiny_resnet", ["layer3", "layer2.conv2"], ["layer1", "layer2.downsample", "layer2.bn2", "layer2.relu"]),
    ("test_bottleneck_resnet", ["layer2.0.conv3"], ["layer1", "layer2.0.downsample", "layer3"]),
    ("test_cnn1d", ["7"], ["3", "11"]),
])
def test_conditions_equal_crp(name, layers, record):
    model, x = _model(name), _input(name)
    channels = {layer: _active_channels(model, x, layer) for layer in layers}
    conditions = [{layer: channels[layer][i] for layer in layers} for i in range(len(x))]
    reference, fast = _both(model, x, targets=[1, 4], conditions=conditions, record_layers=record)
    assert reference.heatmap.abs().sum() > 0
    assert_same_attribution(reference, fast, doubled=layers)


def test_one_sample_many_conditions_broadcasts_like_crp():
    model, x = _model("tiny_vgg"), _input("tiny_vgg", n=1)
    conditions = [{"y": [1], "features.10": [c]} for c in range(3)]
    reference, fast = _both(model, x, conditions=conditions, record_layers=["features.2"])
    assert fast.heatmap.shape[0] == 3
    assert_same_attribution(reference, fast, doubled=["features.10"])


# --- start layer + init_rel --------------------------------------------------------------------


@pytest.mark.parametrize("name,start,record,conditioned", [
    ("tiny_vgg", "features.10", ["features.2", "features.14"], False),
    ("tiny_resnet", "layer2", ["layer1", "layer3"], True),
    ("tiny_resnet", "layer2.conv2", ["layer1", "layer2.downsample"], False),  # inside a block
    ("test_cnn1d", "7", ["3"], True),
])
def test_start_layer_equals_crp(name, start, record, conditioned):
    model, x = _model(name), _input(name)
    conditions = None
    if conditioned:  # a condition on the start layer masks the initial relevance
        conditions = [{start: c} for c in _active_channels(model, x, start)]
    reference, fast = _both(model, x, targets=[1, 2], conditions=conditions, start_layer=start,
                            init_rel=lambda a: a.clamp(min=0) * 2, record_layers=record)
    assert_same_attribution(reference, fast)
    assert_close(fast.outputs, fast.activations[start])


def test_numeric_init_rel_equals_crp():
    model, x = _model("tiny_resnet"), _input("tiny_resnet")
    reference, fast = _both(model, x, targets=[0, 1], init_rel=1, record_layers=["layer2"])
    assert_same_attribution(reference, fast)


# --- unsupported models -------------------------------------------------------------------------


def test_unsupported_module_falls_back_to_zennit_with_a_warning():
    model, x = _model("test_groupnorm_cnn"), _input("test_groupnorm_cnn")
    assert not FastBackend.supports(model, get_model_spec("test_groupnorm_cnn"))
    with pytest.warns(UserWarning, match="GroupNorm"):
        attributor = get_attributor(model)
    assert type(attributor).__name__ == "ZennitBackend"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = get_attributor(model, backend="zennit").attribute(x, targets=[0, 1], record_layers=["2"])
    result = attributor.attribute(x, targets=[0, 1], record_layers=["2"])
    assert_same_attribution(reference, result)


def test_unsupported_composite_falls_back_to_zennit(monkeypatch):
    from zennit.composites import GuidedBackprop

    from utils.lrp import composites

    monkeypatch.setitem(composites.COMPOSITES, "test_guided_backprop", GuidedBackprop)
    model = _model("tiny_vgg")
    with pytest.warns(UserWarning, match="composite"):
        attributor = get_attributor(model, composite="test_guided_backprop")
    assert type(attributor).__name__ == "ZennitBackend"
    assert isinstance(get_attributor(model, composite="epsilon_alpha2_beta1_flat"), FastBackend)


def test_model_with_a_hook_falls_back_to_zennit():
    # a P-ClArC correction is a forward hook that stays on the model; the graph cannot replay it
    model, x = _model("tiny_vgg"), _input("tiny_vgg")
    fast = get_attributor(model, backend="fast")
    handle = model.features[10].register_forward_hook(lambda module, inputs, output: output * 0.5 + 0.1)
    try:
        with pytest.warns(UserWarning, match="hook on ReLU 'features.10'"):
            assert type(get_attributor(model)).__name__ == "ZennitBackend"
        with pytest.warns(UserWarning, match="hook"):
            result = fast.attribute(x, targets=[0, 1], record_layers=["features.2"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = get_attributor(model, backend="zennit").attribute(x, targets=[0, 1],
                                                                          record_layers=["features.2"])
    finally:
        handle.remove()
    assert_same_attribution(reference, result)
    assert isinstance(get_attributor(model), FastBackend)


# --- differentiable heatmaps (training losses) -------------------------------------------------


class _HeatmapOf(nn.Module):
    """The heatmap as a module, so ``torch.func.functional_call`` can swap the model's parameters.

    With ``batch_statistics`` (a model in training mode) the heatmap normalises with the statistics
    of the batch's own training forward, as RRR's ``lrp_composite`` does: a function of the
    parameters through them too."""

    def __init__(self, model, targets, composite=None, batch_statistics=False):
        super().__init__()
        self.model, self.targets, self.batch_statistics = model, targets, batch_statistics
        self.backend = get_attributor(model, backend="fast", composite=composite)

    def forward(self, x):
        if not self.batch_statistics:
            return self.backend.differentiable_heatmap(x, self.targets)
        from utils.lrp.fast.backend import batch_norm_statistics

        with batch_norm_statistics(self.model) as statistics:
            self.model(x)
        return self.backend.differentiable_heatmap(x, self.targets, statistics)


def _directional_derivatives(heatmap_of, model, x):
    """A random directional derivative of ``<v, heatmap>`` w.r.t. the input and every parameter at
    once, by autograd (the double backprop a training loss uses) and by central differences."""
    names = [f"model.{n}" for n, _ in model.named_parameters()]
    point = (x, *(p.detach() for p in model.parameters()))

    def of(values):
        return torch.func.functional_call(heatmap_of, dict(zip(names, values[1:])), (values[0],))

    torch.manual_seed(1)
    direction = [torch.randn_like(t) for t in point]
    v = torch.randn_like(of(point))
    inputs = [t.clone().requires_grad_(True) for t in point]
    grads = torch.autograd.grad((of(inputs) * v).sum(), inputs)
    analytic = sum((g * d).sum() for g, d in zip(grads, direction))
    step = 1e-6
    plus = of([t + step * d for t, d in zip(point, direction)])
    minus = of([t - step * d for t, d in zip(point, direction)])
    return float(analytic), float(((plus - minus) * v).sum() / (2 * step))


@pytest.mark.parametrize("name", ["tiny_vgg", "tiny_resnet", "test_cnn1d"])
@pytest.mark.parametrize("composite", [None, "epsilon_alpha2_beta1_flat"])
def test_differentiable_heatmap_is_the_attribution_and_its_gradient_is_exact(name, composite):
    model, x = _model(name).eval(), _input(name, size=8)
    heatmap_of = _HeatmapOf(model, [1, 3], composite)
    heatmap = heatmap_of(x)
    assert heatmap.requires_grad
    assert_close(heatmap.detach(), heatmap_of.backend.attribute(x, targets=[1, 3]).heatmap)
    analytic, numeric = _directional_derivatives(heatmap_of, model, x)
    assert abs(analytic) > 1e-3
    assert analytic == pytest.approx(numeric, rel=1e-5)


@pytest.mark.parametrize("name", ["tiny_vgg", "tiny_resnet"])
def test_differentiable_heatmap_with_batch_statistics_is_differentiated_through_them(name):
    """In training mode the heatmap depends on the parameters through the batch statistics too; a
    gradient that held them fixed pushes along directions training-mode BatchNorm is blind to (a
    channel's shift or scale), and the eval-mode network drifts away (issue: RRR collapsed in eval)."""
    model, x = _model(name).train(), _input(name, n=3, size=8)
    analytic, numeric = _directional_derivatives(_HeatmapOf(model, [1, 3, 0], batch_statistics=True), model, x)
    assert abs(analytic) > 1e-3
    assert analytic == pytest.approx(numeric, rel=1e-5)


def test_differentiable_heatmap_normalises_with_the_given_batch_statistics():
    from utils.lrp.fast.backend import batch_norm_statistics

    model, x = _model("tiny_vgg").train(), _input("tiny_vgg", n=4)
    with batch_norm_statistics(model) as statistics:
        model(x)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert set(statistics) == set(norms)
    heatmap = get_attributor(model, backend="fast").differentiable_heatmap(x, [0, 1, 2, 3], statistics)
    for module in norms:  # the same network with those statistics as its running ones
        module.running_mean, module.running_var = (t.clone() for t in statistics[module])
    assert_close(heatmap.detach(), get_attributor(model, backend="fast").attribute(x, targets=[0, 1, 2, 3]).heatmap)
    assert not any(module._forward_hooks for module in norms)  # the recording hooks are gone
