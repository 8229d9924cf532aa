"""Differentiable epsilon-LRP for training losses (ISNet), after Faster ISNet's LRP-Flex.

Every ``nn.ReLU`` gets the gradient ``grad_out * a / (a + eps)`` (``a`` = its output, kept in the
graph), and the input relevance is ``d(target)/dx * x`` computed with ``create_graph=True``. Then
the gradient at each layer's output equals ``R / a``, and the relevance a ReLU-ended linear block
(conv or linear, optionally with BatchNorm) receives is exactly LRP-epsilon's
``x_j * sum_k w_jk R_k / (z_k + eps)``. The explained output layer uses the epsilon rule too
(relevance scaled by ``t / (t + eps*sign(t))``) so heatmaps equal zennit's epsilon composite.

Input layer rules:

* ``gradient``: gradient x input (= epsilon rule at the input);
* ``zb``: the z^B rule with per-channel bounds ``low``/``high``; **ours**: the bounds are the
  normalised images' true minimum and maximum (``normalize(0)``, ``normalize(1)``), not 0/1. The
  first linear block (conv/linear, optionally followed by a BatchNorm, merged) must end in a ReLU.

BatchNorm layers compute the same function as in the model's own forward pass: running statistics
in eval mode, the batch's statistics in training mode, but *detached* (constants for the backward
pass, and the running statistics are not updated twice). Each sample's block is then an affine map
and its relevance does not flow through the other samples of the batch. Using running statistics
while the classifier trains with batch statistics would let a heatmap loss reshape the eval-mode
network behind the cross-entropy's back (observed: ISNet fine-tuning collapsed to chance in eval).
"""
import contextlib

import torch
from torch import nn
from torch.nn import functional as F

from utils.errors import UserError

_AFFINE = (nn.Conv1d, nn.Conv2d, nn.Linear)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)


def stabilize(value, eps):
    """``value + eps * sign(value)`` with sign(0) = 1 (zennit's convention)."""
    return value + eps * (value >= 0).to(value).mul(2).sub(1)


class _EpsilonReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, eps):
        a = x.clamp(min=0)
        ctx.save_for_backward(a)
        ctx.eps = eps
        return a

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        # written with differentiable ops on the saved output: the heatmap itself is differentiated
        return grad * a / (a + ctx.eps), None


@contextlib.contextmanager
def epsilon_relu(model, eps):
    """Inside the context every ``nn.ReLU`` of ``model`` back-propagates LRP-epsilon (forward unchanged)."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise UserError(f"{type(model).__name__} has no nn.ReLU: differentiable LRP needs ReLU networks")
    for module in relus:
        module.forward = lambda x, eps=eps: _EpsilonReLU.apply(x, eps)
    try:
        yield
    finally:
        for module in relus:
            del module.forward  # back to the class's forward


@contextlib.contextmanager
def batchnorm_constant_statistics(model, record):
    """BatchNorm with its statistics as constants: running ones in eval mode, the batch's own
    (detached, no running update) in training mode. ``record[module] = (mean, var)`` as used."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def forward(module, x):
        if module.training or module.running_mean is None:
            dims = [0] + list(range(2, x.dim()))
            var, mean = torch.var_mean(x.detach(), dims, unbiased=False)
        else:
            mean, var = module.running_mean, module.running_var
        record[module] = (mean, var)
        return F.batch_norm(x, mean, var, module.weight, module.bias, False, 0.0, module.eps)

    for module in norms:
        module.forward = lambda x, module=module: forward(module, x)
    try:
        yield
    finally:
        for module in norms:
            del module.forward


class DifferentiableLRP:
    """One forward pass with LRP gradients, then any number of heatmaps (one backward each).

    >>> lrp = DifferentiableLRP(model, eps=0.01)
    >>> logits = lrp.forward(x)
    >>> rel = lrp.relevance(logits.gather(1, y[:, None])[:, 0])   # rel["input"], rel["layers"]
    """

    def __init__(self, model, eps=0.01, input_rule="gradient", low=None, high=None, layers=(),
                 output_epsilon=True):
        if input_rule not in ("gradient", "zb"):
            raise UserError(f"unknown input_rule '{input_rule}'; valid: gradient, zb")
        if input_rule == "zb" and (low is None or high is None):
            raise UserError("input_rule 'zb' needs the input bounds low and high")
        self.model, self.eps, self.input_rule = model, eps, input_rule
        self.low, self.high, self.layers = low, high, tuple(layers)
        self.output_epsilon = output_epsilon
        modules = dict(model.named_modules())
        missing = [name for name in self.layers if name not in modules]
        if missing:
            raise UserError(f"differentiable LRP: model has no layer {', '.join(missing)}")
        self._modules = modules
        self._first_block = None  # (affine module, batchnorm or None, first relu), found on first forward

    # --- forward ---------------------------------------------------------------------------------
    def forward(self, x):
        """Logits of ``x`` in a graph that heatmaps can be differentiated through."""
        self.x = x if x.requires_grad else x.detach().requires_grad_(True)
        self.acts, handles = {}, []
        for name in self.layers:
            handles.append(self._modules[name].register_forward_hook(
                lambda m, i, o, name=name: self.acts.__setitem__(name, o)))
        if self.input_rule == "zb":
            if self._first_block is None:
                self._first_block = self._find_first_block(self.x)
            relu = self._first_block[2]
            handles.append(relu.register_forward_hook(
                lambda m, i, o: self.acts.setdefault("__first_relu__", o)))
        try:
            self._bn_stats = {}
            with epsilon_relu(self.model, self.eps), batchnorm_constant_statistics(self.model, self._bn_stats):
                self.logits = self.model(self.x)
        finally:
            for handle in handles:
                handle.remove()
        return self.logits

    # --- relevance -------------------------------------------------------------------------------
    def relevance(self, target, create_graph=True):
        """Heatmaps of ``target`` (N,), a function of this forward's logits; the graph is kept.

        ``create_graph=False`` gives plain heatmaps (no loss will be differentiated through them).
        """
        inputs = [self.x] + [self.acts[name] for name in self.layers]
        if self.input_rule == "zb":
            inputs.append(self.acts["__first_relu__"])
        grads = torch.autograd.grad(target.sum(), inputs, create_graph=create_graph, retain_graph=True)
        scale = target / stabilize(target, self.eps) if self.output_epsilon else torch.ones_like(target)
        scale = scale.view(-1, *([1] * (self.x.dim() - 1)))
        if self.input_rule == "zb":
            rel_input = self._zb(self.acts["__first_relu__"] * grads[-1])
        else:
            rel_input = self.x * grads[0]
        layers = {}
        for name, act, grad in zip(self.layers, inputs[1:], grads[1:]):
            layers[name] = act * grad * scale.view(-1, *([1] * (act.dim() - 1)))
        return {"input": rel_input * scale, "layers": layers}

    # --- z^B at the input ------------------------------------------------------------------------
    def _find_first_block(self, x):
        order = execution_order(self.model, x.detach())
        first = [self._modules[name] for name in order[:3]]
        if not isinstance(first[0], _AFFINE):
            raise UserError("input_rule 'zb': the model's first layer must be a convolution or linear layer")
        norm = first[1] if isinstance(first[1], _BATCHNORM) else None
        relu = first[2 if norm is not None else 1]
        if not isinstance(relu, nn.ReLU):
            raise UserError("input_rule 'zb': the first layer (and its BatchNorm) must be followed by a ReLU")
        return first[0], norm, relu

    def _merged_params(self):
        affine, norm, _ = self._first_block
        weight = affine.weight
        bias = affine.bias if affine.bias is not None else torch.zeros(weight.shape[0]).to(weight)
        if norm is not None:  # BatchNorm merged into the layer (statistics as used): one affine map
            mean, var = self._bn_stats[norm]
            scale = norm.weight / torch.sqrt(var + norm.eps)
            weight = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
            bias = (bias - mean) * scale + norm.bias
        return weight, bias

    def _apply(self, x, weight, bias):
        affine = self._first_block[0]
        if isinstance(affine, nn.Linear):
            return F.linear(x.flatten(1) if x.dim() > 2 else x, weight, bias)
        conv = F.conv2d if isinstance(affine, nn.Conv2d) else F.conv1d
        return conv(x, weight, bias, affine.stride, affine.padding, affine.dilation, affine.groups)

    def _zb(self, rel_out):
        x = self.x
        weight, bias = self._merged_params()
        low = torch.as_tensor(self.low).to(x).expand_as(x)
        high = torch.as_tensor(self.high).to(x).expand_as(x)
        w_pos, w_neg = weight.clamp(min=0), weight.clamp(max=0)
        denominator = (self._apply(x, weight, bias) - self._apply(low, w_pos, bias.clamp(min=0))
                       - self._apply(high, w_neg, bias.clamp(max=0)))
        s = rel_out / stabilize(denominator, 1e-6)
        probe = torch.zeros_like(x, requires_grad=True)
        # W^T s for each weight variant: the layer is linear, so d<layer(probe), s>/d probe = W^T s
        parts = [torch.autograd.grad((self._apply(probe, w, None) * s).sum(), probe, create_graph=True)[0]
                 for w in (weight, w_pos, w_neg)]
        return x * parts[0] - low * parts[1] - high * parts[2]


def execution_order(model, example):
    """Names of the leaf modules in the order a forward pass of ``example`` calls them."""
    order, handles = [], []
    for name, module in model.named_modules():
        if not list(module.children()):
            handles.append(module.register_forward_hook(lambda m, i, o, name=name: order.append(name)))
    modes = {module: module.training for module in model.modules()}  # restored one by one: frozen
    try:                                                              # layers stay in eval mode
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for module, mode in modes.items():
            module.training = mode
        for handle in handles:
            handle.remove()
    return list(dict.fromkeys(order))


def input_bounds(dataset, channels):
    """z^B bounds of a data set's normalised inputs: ``normalize(0)`` and ``normalize(1)`` per channel."""
    shape = (channels, 1) if getattr(dataset, "modality", "image") == "signal" else (channels, 1, 1)
    return dataset.normalize(torch.zeros(shape)), dataset.normalize(torch.ones(shape))
