"""LRP-Flex (``utils.lrp.explain``): heatmaps of any supported ``nn.Module``.

Checked against zennit in float64 on a network no registry knows (BatchNorm statistics randomised, so
merging is exercised), conservation without biases (and its failure with them, the control), target
handling, differentiability, one-line refusals, and the registered DenseNet under both rules.
"""
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import LAYER_MAP_BASE, EpsilonPlusFlat, SpecialFirstLayerMapComposite
from zennit.rules import Epsilon, ZBox
from zennit.types import Convolution

from models import get_model
from utils.errors import UserError
from utils.lrp import explain, get_attributor
from utils.lrp.composites import EpsilonComposite

EPS = 0.05  # large: a misplaced or missing epsilon shows


def _cnn(zero_biases=False, seed=0):
    """Conv-BN-ReLU blocks, max pooling (no average pooling: zennit's Norm rule adds a stabilizer)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(32, 10), nn.ReLU(), nn.Linear(10, 4)).double()
    bn = net[1]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.3, 0.3)
    bn.eps = 1e-12  # zennit's merged BatchNorm keeps x / sqrt(1 + eps): make it the identity
    if zero_biases:
        for module in net.modules():
            if getattr(module, "bias", None) is not None:
                module.bias.data.zero_()
        bn.running_mean.zero_()
    return net.eval()


def _input(n=4, size=8):
    torch.manual_seed(1)
    return torch.randn(n, 3, size, size, dtype=torch.float64)


def _zennit(net, x, target, composite):
    x = x.clone().requires_grad_(True)
    with composite.context(net) as modified:
        out = modified(x)
        start = torch.zeros_like(out).scatter(1, target[:, None], out.gather(1, target[:, None]))
        (heatmap,) = torch.autograd.grad(out, x, start)
    return heatmap


def _relative(actual, expected):
    assert actual.shape == expected.shape
    return ((actual - expected).abs().max() / expected.abs().max()).item()


@pytest.mark.parametrize("input_rule", ["gradient", "zb"])
def test_epsilon_equals_zennit_on_an_unregistered_network(input_rule):
    net, x = _cnn(), _input()
    target = torch.tensor([0, 1, 2, 3])
    low, high = torch.full((1, 3, 1, 1), -3.0, dtype=torch.float64), torch.full((1, 3, 1, 1), 3.0, dtype=torch.float64)
    result = explain(net, x, target=target, eps=EPS, input_rule=input_rule, low=low, high=high)
    if input_rule == "gradient":
        composite = EpsilonComposite(canonizers=[SequentialMergeBatchNorm()], epsilon=EPS)
    else:
        layer_map = LAYER_MAP_BASE + [(Convolution, Epsilon(EPS)), (nn.Linear, Epsilon(EPS))]
        composite = SpecialFirstLayerMapComposite(layer_map, [(Convolution, ZBox(low, high))],
                                                  canonizers=[SequentialMergeBatchNorm()])
    reference = _zennit(net, x, target, composite)
    assert reference.abs().sum() > 0
    assert _relative(result.heatmap, reference) < 1e-10
    assert torch.equal(result.target, target)
    assert torch.allclose(result.logits, net(x))


def test_epsilon_conserves_the_logit_without_biases():
    """With eps small and no bias anywhere, no relevance is absorbed: each heatmap sums to its logit.
    The control: with biases (and BatchNorm shifts) the sums are off by percents."""
    x = _input()
    result = explain(_cnn(zero_biases=True), x)  # default eps 1e-6
    logit = result.logits.gather(1, result.target[:, None])[:, 0]
    assert torch.allclose(result.heatmap.flatten(1).sum(1), logit, rtol=1e-4)
    biased = explain(_cnn(), x)
    logit = biased.logits.gather(1, biased.target[:, None])[:, 0]
    assert not torch.allclose(biased.heatmap.flatten(1).sum(1), logit, rtol=1e-2)


def test_targets():
    net, x = _cnn(), _input()
    predicted = explain(net, x)
    assert torch.equal(predicted.target, net(x).argmax(1))
    # one class for all, and one per sample: each heatmap is that of its own sample and class
    per_sample = torch.tensor([3, 0, 3, 1])
    together = explain(net, x, target=per_sample).heatmap
    for i, k in enumerate(per_sample.tolist()):
        alone = explain(net, x[i:i + 1], target=k)
        assert alone.target.tolist() == [k]
        assert torch.allclose(together[i:i + 1], alone.heatmap, rtol=1e-10, atol=1e-14)
    assert torch.equal(explain(net, x, target=2).target, torch.full((4,), 2))
    with torch.no_grad():  # LRP is a backward pass: a caller's no_grad does not stop it
        assert torch.equal(explain(net, x, target=per_sample).heatmap, together)
    assert not torch.allclose(explain(net, x, target=0).heatmap, explain(net, x, target=1).heatmap)
    for bad, message in ((4, r"target class 4 out of range; the model has 4 classes \(0\.\.3\)"),
                         (torch.tensor([0, 1]), r"one class or one per sample \(4\)"),
                         (torch.tensor([0.0, 1.0, 0.0, 1.0]), "integers")):
        with pytest.raises(UserError, match=message):
            explain(net, x, target=bad)


@pytest.mark.parametrize("rule", ["epsilon", "z_plus"])
def test_create_graph_gives_a_heatmap_one_can_train_through(rule):
    net, x = _cnn(), _input(2)
    plain = explain(net, x, rule=rule)
    assert not plain.heatmap.requires_grad and not plain.logits.requires_grad
    result = explain(net, x, rule=rule, create_graph=True)
    assert torch.equal(result.heatmap.detach(), plain.heatmap)
    result.heatmap.abs().sum().backward()
    for layer in (net[0], net[4], net[8]):
        grad = layer.weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_model_is_explained_in_eval_mode_and_left_as_it_was():
    net, x = _cnn(), _input()
    reference = explain(net, x).heatmap
    net.train()
    net[0].eval()  # a frozen layer of a model in training stays frozen
    running = net[1].running_mean.clone()
    for rule in ("epsilon", "z_plus"):
        assert torch.allclose(explain(net, x, rule=rule, target=0).heatmap,
                              explain(net.eval(), x, rule=rule, target=0).heatmap)
        net.train()
        net[0].eval()
    assert torch.equal(explain(net, x).heatmap, reference)
    assert net.training and net[1].training and not net[0].training
    assert torch.equal(net[1].running_mean, running)  # no training forward counted


class _GeluNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(F.gelu(self.conv(x)).mean((2, 3)))


def test_a_functional_nonlinearity_is_refused_in_one_line_naming_it():
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(UserError) as error:
        explain(_GeluNet(), x)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("model (_GeluNet): its forward calls torch.nn.functional.gelu")
    # z+ replays modules, so it cannot explain a forward it does not know, whatever it computes
    with pytest.raises(UserError, match=r"rule 'z_plus' explains registered models .*_GeluNet is neither"):
        explain(_GeluNet(), x, rule="z_plus")


def test_bad_arguments_are_one_line_errors():
    net, x = _cnn(), _input()
    for kwargs, message in (({"rule": "z"}, "unknown rule 'z'; valid: epsilon, z_plus"),
                            ({"input_rule": "flat"}, "unknown input_rule 'flat'"),
                            ({"input_rule": "zb"}, "needs the input bounds low and high"),
                            ({"input_rule": "zb", "low": [0.0, 1.0], "high": 1.0}, "does not fit inputs"),
                            ({"rule": "z_plus", "input_rule": "zb"}, "belongs to rule 'epsilon'")):
        with pytest.raises(UserError, match=message):
            explain(net, x, **kwargs)
    with pytest.raises(UserError, match="floating-point batch"):
        explain(net, x[0].long())


def test_z_plus_on_an_unregistered_sequential_is_zennits_epsilon_plus_flat():
    net, x = _cnn(), _input()
    target = torch.tensor([1, 1, 0, 3])
    result = explain(net, x, target=target, rule="z_plus")
    reference = _zennit(net, x, target, EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()]))
    assert reference.abs().sum() > 0
    assert _relative(result.heatmap, reference) < 1e-10
    assert _relative(result.heatmap, explain(net, x, target=target).heatmap) > 1e-2  # not the epsilon heatmap


def test_z_plus_of_a_hooked_model_sees_the_hook():
    """A P-ClArC correction is a forward hook; the fast engine would skip it, zennit does not."""
    net, x = _cnn(), _input()
    plain = explain(net, x, target=0, rule="z_plus").heatmap
    scale = torch.linspace(0, 1, 8, dtype=torch.float64).view(1, 8, 1, 1)
    net[5].register_forward_hook(lambda module, inputs, output: output * scale)
    hooked = explain(net, x, target=0, rule="z_plus")
    assert torch.allclose(hooked.logits, net(x))
    assert _relative(hooked.heatmap, plain) > 1e-2
    with pytest.raises(UserError, match="cannot give a differentiable heatmap of a model with a hook on ReLU '5'"):
        explain(net, x, rule="z_plus", create_graph=True)


@pytest.mark.parametrize("rule,composite", [("epsilon", "epsilon"), ("z_plus", None)])
def test_tiny_densenet_under_both_rules_is_the_audits_heatmap(rule, composite):
    """On the registered DenseNet each rule gives what ``get_attributor`` computes with the same
    composite: ``epsilon`` the project's epsilon composite (differentiable LRP vs the fast engine, within
    zennit's BatchNorm and pooling stabilisers, ~1e-4), ``z_plus`` the family's own composite exactly."""
    torch.manual_seed(0)
    model = get_model("tiny_densenet", 5, img_size=32).double()
    torch.manual_seed(5)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    result = explain(model, x, rule=rule)
    reference = get_attributor(model, backend="fast", composite=composite).attribute(x, targets=result.target)
    with torch.no_grad():
        assert torch.allclose(result.logits, model(x), rtol=1e-12)
    assert reference.heatmap.abs().sum() > 0
    assert _relative(result.heatmap, reference.heatmap) < (1e-3 if rule == "epsilon" else 1e-12)
