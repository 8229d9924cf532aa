"""Differentiable epsilon-LRP equals zennit's epsilon rule (same input rule) on ReLU networks."""
import pytest
import torch
from torch import nn
from zennit.composites import LayerMapComposite, SpecialFirstLayerMapComposite
from zennit.rules import Epsilon, Norm, Pass, ZBox
from zennit.types import Activation, AvgPool, Convolution, Linear

from utils.lrp.differentiable import DifferentiableLRP

EPS = 0.05


def _tiny_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                        nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    return net


def _zennit_heatmap(net, x, target, first_rule=None):
    # zennit's standard composites give average pooling the Norm rule (LRP-z), as gradient x input does
    layer_map = [(Activation, Pass()), (AvgPool, Norm()), (Convolution, Epsilon(EPS)), (Linear, Epsilon(EPS))]
    if first_rule is None:
        composite = LayerMapComposite(layer_map=layer_map)
    else:
        composite = SpecialFirstLayerMapComposite(layer_map=layer_map, first_map=[(Convolution, first_rule)])
    x = x.clone().requires_grad_(True)
    with composite.context(net) as modified:
        out = modified(x)
        init = torch.zeros_like(out).scatter(1, target[:, None], out.gather(1, target[:, None]))
        (heatmap,) = torch.autograd.grad(out, x, init)
    return heatmap


@pytest.mark.parametrize("rule,first", [("gradient", None), ("zb", None), ("zb", "grouped_strided")])
def test_matches_zennit_epsilon(rule, first):
    net = _tiny_net()
    if first == "grouped_strided":  # zB's transposes one group at a time; a stride that drops a pixel
        torch.manual_seed(2)
        net[0] = nn.Conv2d(3, 6, 3, stride=2, padding=1, groups=3).double()
        net[3] = nn.Conv2d(6, 5, 3, padding=1).double()
        net[5], net[7] = nn.AdaptiveAvgPool2d(2), nn.Linear(20, 8).double()
    torch.manual_seed(1)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 1])
    low, high = torch.full((1, 3, 1, 1), -2.5, dtype=torch.float64), torch.full((1, 3, 1, 1), 2.5, dtype=torch.float64)
    lrp = DifferentiableLRP(net, eps=EPS, input_rule=rule, low=low, high=high)
    logits = lrp.forward(x)
    ours = lrp.relevance(logits.gather(1, target[:, None])[:, 0])["input"]
    reference = _zennit_heatmap(net, x, target, ZBox(low, high) if rule == "zb" else None)
    assert torch.allclose(ours, reference, atol=1e-5, rtol=1e-5)
    assert reference.abs().sum() > 0


def test_heatmap_is_differentiable_wrt_parameters():
    net = _tiny_net()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    lrp = DifferentiableLRP(net, eps=EPS, layers=("4",))
    logits = lrp.forward(x)
    rel = lrp.relevance(logits[:, 0])
    (rel["input"].abs().sum() + rel["layers"]["4"].abs().sum()).backward()
    assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0
    assert all(type(m).forward is m.forward.__func__ for m in net if isinstance(m, nn.ReLU))  # hooks removed


def test_batchnorm_uses_the_models_own_statistics_as_constants():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 6 * 6, 2)).double()
    x = torch.randn(5, 3, 6, 6, dtype=torch.float64)
    for training in (True, False):
        net.train(training)
        before = net[1].running_mean.clone()
        low, high = -3 * torch.ones(1, 3, 1, 1, dtype=torch.float64), 3 * torch.ones(1, 3, 1, 1, dtype=torch.float64)
        lrp = DifferentiableLRP(net, eps=EPS, input_rule="zb", low=low, high=high)
        logits = lrp.forward(x)
        assert torch.equal(net[1].running_mean, before)  # the LRP pass never updates statistics
        expected = net(x)  # the model's own pass (in training mode it updates them, as training does)
        assert torch.allclose(logits, expected, atol=1e-10)
        heatmap = lrp.relevance(logits[:, 0])["input"]
        # conservation through the merged conv+BN block: zB redistributes the block's relevance
        block_out = lrp._apply(x, *lrp._merged_params())
        conv = net[0](x)
        reference = (torch.nn.functional.batch_norm(conv, None, None, net[1].weight, net[1].bias, True, 0.0, net[1].eps)
                     if training else net[1](conv))
        assert torch.allclose(block_out, reference, atol=1e-8)
        assert torch.isfinite(heatmap).all()


def _bn_net():
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 3 * 3, 2)).double()


def _gradients(net, loss):
    net.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad.clone() for p in net.parameters()]


def test_shared_training_forward_gives_the_two_pass_gradient():
    """Eval-mode BatchNorm (ISNet fine-tuning): one forward for the cross-entropy and the heatmap loss
    gives the same parameter gradients as a plain forward for the cross-entropy plus an LRP pass."""
    x = torch.randn(6, 3, 6, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    low, high = -3 * torch.ones(1, 3, 1, 1, dtype=torch.float64), 3 * torch.ones(1, 3, 1, 1, dtype=torch.float64)

    def heatmap_loss(logits, lrp):
        return lrp.relevance(logits.gather(1, y[:, None])[:, 0])["input"][..., :3, :].abs().sum()

    grads = []
    for shared in (True, False):
        net = _bn_net().eval()
        lrp = DifferentiableLRP(net, eps=EPS, input_rule="zb", low=low, high=high)
        if shared:
            logits = lrp.forward(x, training=True)
            total = nn.functional.cross_entropy(logits, y) + heatmap_loss(logits, lrp)
        else:
            total = nn.functional.cross_entropy(net(x), y) + heatmap_loss(lrp.forward(x), lrp)
        grads.append(_gradients(net, total))
    assert all(torch.allclose(a, b, atol=1e-9) for a, b in zip(*grads))
    assert grads[0][0].abs().sum() > 0


def test_training_forward_is_the_models_own_forward():
    """Training-mode BatchNorm: the shared forward updates the statistics once, as the model's own pass
    does, back-propagates the model's own gradient, and gives the same heatmaps as a separate LRP pass."""
    x = torch.randn(6, 3, 6, 6, dtype=torch.float64)
    plain, shared = _bn_net().train(), _bn_net().train()
    expected = _gradients(plain, plain(x)[:, 1].sum())
    lrp = DifferentiableLRP(shared, eps=EPS)
    logits = lrp.forward(x, training=True)
    heatmap = lrp.relevance(logits[:, 1])["input"]
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(_gradients(shared, logits[:, 1].sum()), expected))
    for norm in (1, 5):
        assert torch.allclose(shared[norm].running_mean, plain[norm].running_mean)
        assert torch.allclose(shared[norm].running_var, plain[norm].running_var)
    reference = _bn_net().train()
    reference_lrp = DifferentiableLRP(reference, eps=EPS)
    assert torch.allclose(heatmap, reference_lrp.relevance(reference_lrp.forward(x)[:, 1])["input"], atol=1e-10)



@pytest.mark.parametrize("rule", ["gradient", "zb"])
def test_training_heatmap_is_differentiated_through_the_batch_statistics(rule):
    """Training-mode BatchNorm: the derivative of a heatmap loss w.r.t. the parameters equals central
    differences of the heatmap of the training-mode network, whose batch statistics move with the
    parameters. Holding them fixed (as constants) pushed RRR and ISNet along directions in which
    training-mode BatchNorm is invariant, and the eval-mode network collapsed."""
    net = _bn_net().train()
    torch.manual_seed(4)
    x = torch.randn(6, 3, 6, 6, dtype=torch.float64)
    low, high = -3 * torch.ones(1, 3, 1, 1, dtype=torch.float64), 3 * torch.ones(1, 3, 1, 1, dtype=torch.float64)
    v = torch.randn(6, 3, 6, 6, dtype=torch.float64)

    def loss():
        lrp = DifferentiableLRP(net, eps=EPS, input_rule=rule, low=low, high=high)
        logits = lrp.forward(x, training=True)  # running statistics move; training-mode outputs do not use them
        return (lrp.relevance(logits[:, 1])["input"] * v).sum()

    params = list(net.parameters())
    direction = [torch.randn_like(p) for p in params]
    analytic = sum((g * d).sum() for g, d in zip(torch.autograd.grad(loss(), params), direction))

    def shifted(step):
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.add_(step * d)
        value = loss().detach()
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.sub_(step * d)
        return value

    step = 1e-6
    numeric = (shifted(step) - shifted(-step)) / (2 * step)
    assert abs(float(analytic)) > 1e-3
    assert float(analytic) == pytest.approx(float(numeric), rel=1e-5)
