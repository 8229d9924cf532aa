"""DenseNet under the three LRP implementations: zennit (reference), the fast engine, differentiable LRP.

float64, tiny_densenet in eval mode, randomized BatchNorm statistics (so merging and the BatchNorm rule
are really exercised). Canonizer ``densenet``: BatchNorm merged into the conv it follows (stem, inside
each dense layer), every other BatchNorm (after a concatenation) a depthwise convolution with the
composite's convolution rule; concatenations split relevance back to their inputs.
"""
import warnings

import pytest
import torch
from torch import nn
from zennit.composites import EpsilonPlusFlat, LayerMapComposite
from zennit.core import BasicHook
from zennit.rules import Epsilon, Pass
from zennit.types import Activation, AvgPool, Convolution

from models import get_model, get_model_spec
from utils.lrp import get_attributor
from utils.lrp.composites import make_canonizers
from utils.lrp.differentiable import DifferentiableLRP
from utils.lrp.explainable import Flow
from utils.lrp.fast import FastBackend

NAME, N_CLASSES = "tiny_densenet", 5
TARGETS = torch.tensor([1, 3])
# inner layers too: a dense layer's output (read by later layers), a BatchNorm after a concatenation
INNER = ("features.denseblock2", "features.denseblock2.denselayer1.conv2", "features.denseblock2.denselayer2.norm1")


def _model(seed=0, zero_biases=False):
    torch.manual_seed(seed)
    model = get_model(NAME, N_CLASSES).double()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.3, 0.3)
            if zero_biases:  # then no relevance is absorbed by biases: LRP conserves it
                module.running_mean.zero_()
                module.bias.data.zero_()
    if zero_biases:
        model.classifier.bias.data.zero_()
    return model


def _input(n=2):
    torch.manual_seed(5)
    return torch.randn(n, 3, 32, 32, dtype=torch.float64)


def relative_error(actual, expected):
    assert actual.shape == expected.shape
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def _differentiable(model, x, eps, targets=TARGETS):
    lrp = DifferentiableLRP(model, eps=eps)
    logits = lrp.forward(x)
    return lrp.relevance(logits.gather(1, targets[:, None])[:, 0], create_graph=False)["input"].detach(), lrp


def test_canonizer_keeps_outputs_and_is_removable():
    model, x = _model(), _input()
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    before = model(x)
    norm = model.features.denseblock1.denselayer2.norm1  # after a concatenation: not mergeable
    with EpsilonPlusFlat(canonizers=make_canonizers("densenet")).context(model) as modified:
        during = modified(x)
        assert isinstance(norm.canonizer_convolution, nn.Conv2d)
        assert torch.equal(model.features.norm0.weight, torch.ones_like(model.features.norm0.weight))  # merged
    # zennit leaves a merged BatchNorm as x / sqrt(1 + eps): a relative change of ~5e-6 per merge
    assert torch.allclose(before, during, rtol=1e-4, atol=1e-8)
    assert torch.equal(before, model(x))
    assert not hasattr(norm, "canonizer_convolution")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in reference.items())


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_plus", "epsilon_alpha2_beta1_flat", "epsilon"])
def test_fast_engine_equals_zennit(composite):
    model, x = _model(), _input()
    spec = get_model_spec(NAME)
    layers = spec.layer_names + INNER
    reference = get_attributor(model, backend="zennit", composite=composite).attribute(
        x, targets=TARGETS, record_layers=layers)
    fast = get_attributor(model, backend="fast", composite=composite)
    assert isinstance(fast, FastBackend)
    result = fast.attribute(x, targets=TARGETS, record_layers=layers)
    assert reference.heatmap.abs().sum() > 0
    assert relative_error(result.heatmap, reference.heatmap) < 1e-9  # measured ~1e-15
    assert relative_error(result.outputs, reference.outputs) < 1e-12
    for layer in layers:
        assert relative_error(result.relevances[layer], reference.relevances[layer]) < 1e-9, layer
        assert relative_error(result.activations[layer], reference.activations[layer]) < 1e-12, layer


def test_three_backends_agree_on_the_epsilon_composite():
    """zennit and the fast engine agree to rounding. The differentiable LRP (eps = zennit's 1e-6) differs
    from them only where zennit's canonized network is not the network itself: a merged BatchNorm stays
    as x / sqrt(1 + 1e-5), and average pooling's Norm rule adds a 1e-6 stabilizer (the next test removes
    both and finds the differentiable LRP exact)."""
    model, x = _model(), _input()
    zennit = get_attributor(model, backend="zennit", composite="epsilon").attribute(x, targets=TARGETS).heatmap
    fast = get_attributor(model, backend="fast", composite="epsilon").attribute(x, targets=TARGETS).heatmap
    differentiable, _ = _differentiable(model, x, eps=1e-6)
    assert zennit.abs().sum() > 0
    assert relative_error(fast, zennit) < 1e-9  # measured ~6e-16
    # measured 1.7e-5 to 1.1e-4 over seeds, mostly the stabilizer where a pooled conv output is near 0
    assert relative_error(differentiable, zennit) < 1e-3
    assert relative_error(differentiable, fast) < 1e-3


def _exact_norm():
    """zennit's Norm rule (average pooling) without its 1e-6 stabilizer: what gradient x input computes."""
    return BasicHook(input_modifiers=[lambda i: i], param_modifiers=[None], output_modifiers=[lambda o: o],
                     gradient_mapper=lambda g, outputs: torch.where(outputs[0] == 0, 0.0, g / outputs[0]),
                     reducer=lambda inputs, gradients: inputs[0] * gradients[0], param_keys=[])


def test_differentiable_lrp_is_exact_epsilon_lrp():
    """With a large epsilon every misplaced epsilon shows: a linear layer whose output is concatenated
    (a dense layer's conv2, a transition's conv) gets its epsilon at its output, the BatchNorm after the
    concatenation its own epsilon through the ReLU after it. BatchNorm eps ~0 and the exact Norm rule
    remove zennit's two departures from the network (previous test)."""
    eps = 0.05
    model, x = _model(), _input()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = 1e-12
    composite = LayerMapComposite([(Activation, Pass()), (AvgPool, _exact_norm()), (Convolution, Epsilon(eps)),
                                   (nn.Linear, Epsilon(eps))], canonizers=make_canonizers("densenet"))
    inputs = x.clone().requires_grad_(True)
    with composite.context(model) as modified:
        out = modified(inputs)
        start = torch.zeros_like(out).scatter(1, TARGETS[:, None], out.gather(1, TARGETS[:, None]))
        (reference,) = torch.autograd.grad(out, inputs, start)
    ours, lrp = _differentiable(model, x, eps)
    convs = {f"features.denseblock{b}.denselayer{i}.conv2" for b in (1, 2, 3) for i in (1, 2)}
    assert set(lrp.flow.epsilon_outputs) == convs | {"features.transition1.conv", "features.transition2.conv"}
    assert relative_error(ours, reference) < 1e-9  # measured ~2e-12
    # the control: without the epsilon at those outputs the heatmap is off by percents
    lrp.flow = Flow(lrp.flow.order, ())
    logits = lrp.forward(x)
    without = lrp.relevance(logits.gather(1, TARGETS[:, None])[:, 0], create_graph=False)["input"].detach()
    assert relative_error(without, reference) > 1e-2


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon"])
def test_relevance_is_conserved(composite):
    """Without biases (BatchNorm shifts, running means, the classifier's bias) no relevance is absorbed:
    the heatmap and every recorded layer hold the explained logit. Without the BatchNorm rule zennit
    would pass weight / std times the relevance through each BatchNorm after a concatenation."""
    model, x = _model(zero_biases=True), _input(4)
    targets = torch.tensor([0, 1, 2, 4])
    spec = get_model_spec(NAME)
    for backend in ("zennit", "fast"):
        result = get_attributor(model, backend=backend, composite=composite).attribute(
            x, targets=targets, record_layers=spec.layer_names)
        logit = result.outputs[torch.arange(4), targets]
        assert torch.allclose(result.heatmap.flatten(1).sum(1), logit, rtol=1e-4), backend  # measured ~2e-5
        for layer in spec.layer_names:
            assert torch.allclose(result.relevances[layer].flatten(1).sum(1), logit, rtol=1e-4), (backend, layer)
    heatmap, lrp = _differentiable(model, x, eps=1e-6, targets=targets)
    assert torch.allclose(heatmap.flatten(1).sum(1), lrp.logits[torch.arange(4), targets], rtol=1e-4)


def test_conditions_inside_a_dense_block_are_left_to_zennit():
    # crp's exclude_parallel inside a block (the skipping paths get nothing) is zennit's to compute
    model, x = _model(), _input()
    layer = "features.denseblock2.denselayer1.conv2"
    conditions = [{"y": [1], layer: [0, 2]}, {"y": [3], layer: [1]}]
    with pytest.warns(UserWarning, match="dense block"):
        result = get_attributor(model, backend="fast").attribute(x, conditions=conditions, record_layers=[layer])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = get_attributor(model, backend="zennit").attribute(x, conditions=conditions, record_layers=[layer])
    assert relative_error(result.heatmap, reference.heatmap) < 1e-12


def test_conditions_between_blocks_and_start_layers_inside_equal_crp():
    model, x = _model(), _input()
    fast, zennit = get_attributor(model, backend="fast"), get_attributor(model, backend="zennit")
    # a condition on a transition (between blocks): crp keeps that layer's relevance twice (see
    # test_fast_backend.py), everything else is equal
    conditions = [{"y": [1], "features.transition1": [0, 3]}, {"y": [3], "features.transition1": [5]}]
    record = ["features.denseblock1", "features.transition2"]
    a, b = (backend.attribute(x, conditions=conditions, record_layers=record) for backend in (fast, zennit))
    assert a.heatmap.abs().sum() > 0
    assert relative_error(a.heatmap, b.heatmap) < 1e-9
    for layer in record:
        assert relative_error(a.relevances[layer], b.relevances[layer]) < 1e-9
    # start inside a dense block: only the paths from that layer's output are explained
    start = "features.denseblock2.denselayer1"
    a, b = (backend.attribute(x, start_layer=start, init_rel=lambda act: act.clamp(min=0),
                              record_layers=["features.transition1"]) for backend in (fast, zennit))
    assert a.heatmap.abs().sum() > 0
    assert relative_error(a.heatmap, b.heatmap) < 1e-9
    assert relative_error(a.relevances["features.transition1"], b.relevances["features.transition1"]) < 1e-9


class _HeatmapOf(nn.Module):
    """The fast heatmap as a module, so ``torch.func.functional_call`` can swap the model's parameters."""

    def __init__(self, model):
        super().__init__()
        self.model, self.backend = model, get_attributor(model, backend="fast")

    def forward(self, x):
        return self.backend.differentiable_heatmap(x, TARGETS)


def test_fast_differentiable_heatmap_has_the_exact_gradient():
    """The fast engine's heatmap as a training loss (RRR's lrp_composite): the concatenations and the
    BatchNorm rule are differentiated exactly (central differences along a random direction)."""
    model, x = _model().eval(), _input()[:, :, :16, :16]
    heatmap_of = _HeatmapOf(model)
    names = [f"model.{n}" for n, _ in model.named_parameters()]
    point = [p.detach() for p in model.parameters()]

    def heatmap(values):
        return torch.func.functional_call(heatmap_of, dict(zip(names, values)), (x,))

    assert relative_error(heatmap(point).detach(), heatmap_of.backend.attribute(x, targets=TARGETS).heatmap) < 1e-12
    torch.manual_seed(2)
    direction = [torch.randn_like(p) for p in point]
    v = torch.randn_like(x)
    inputs = [p.clone().requires_grad_(True) for p in point]
    grads = torch.autograd.grad((heatmap(inputs) * v).sum(), inputs)
    analytic = sum((g * d).sum() for g, d in zip(grads, direction)).item()
    step = 1e-6
    plus = heatmap([p + step * d for p, d in zip(point, direction)])
    minus = heatmap([p - step * d for p, d in zip(point, direction)])
    numeric = (((plus - minus) * v).sum() / (2 * step)).item()
    assert abs(analytic) > 1e-4
    assert analytic == pytest.approx(numeric, rel=1e-5)
