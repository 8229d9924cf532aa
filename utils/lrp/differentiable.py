"""Differentiable epsilon-LRP for training losses (ISNet), after Faster ISNet's LRP-Flex.

While heatmaps are computed, every ``nn.ReLU`` gets the gradient ``grad_out * a / (a + eps)``
(``a`` = its output, kept in the graph), and the input relevance is ``d(target)/dx * x`` computed with
``create_graph=True``. Then
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
in eval mode, the batch's statistics in training mode. For each sample's relevance they are
constants (each sample's block is an affine map and its relevance does not flow through the other
samples of the batch), and the running statistics are not updated twice. In the training forward
(``forward(x, training=True)``) the heatmap's derivative w.r.t. the parameters still flows through
the batch statistics: training-mode BatchNorm is invariant to shifting or rescaling its input
channel, so a heatmap loss that held the statistics fixed would push the parameters along exactly
those directions, where the cross-entropy never pushes back, until the running statistics lag far
behind and the eval-mode network collapses while the training-mode one looks fine (the
measurements: experiments/mitigation_experiments/README.md, "Why RRR and ISNet collapsed, and what
changed").

One forward serves the heatmaps and the training loss (``forward(x, training=True)``): outside
:meth:`DifferentiableLRP.relevance` the ReLUs and BatchNorms back-propagate their true gradients, so
the loss's backward pass (through the forward and through the heatmap graph) is the exact gradient of
the loss, and a training step needs no second, plain forward pass. A BatchNorm in training mode is
then computed once (``_TrainingBatchNorm``): its backward is the exact one for the loss and the
constant-statistics one inside heatmaps.

What the network may contain is checked once, on the first forward (:func:`check_explainable`): only
layers with a rule here, no nonlinearity computed outside a module (it would pass its plain gradient
silently). The same check finds the linear layers whose output reaches the next linear layer without a
ReLU between them (DenseNet: a dense layer's last convolution, feeding concatenations read by
BatchNorms; the transitions' convolutions): their epsilon rule is applied at their output
(``_EpsilonOutput``), so every linear layer gets its epsilon exactly once, as in zennit's epsilon
composite. In the other registered families every linear layer ends in a ReLU and nothing changes.
"""
import contextlib

import torch
from torch import nn
from torch.nn import functional as F

from utils.errors import UserError
from utils.lrp.explainable import trace

_AFFINE = (nn.Conv1d, nn.Conv2d, nn.Linear)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)

def unsupported_reason(spec):
    """``None`` if heatmaps of models like ``spec`` can be trained through (this module's epsilon-LRP,
    or the fast backend's composite), else a short description of the obstacle (the family's
    ``ModelSpec.explanation``), for a one-line refusal up front."""
    return spec.explanation.not_differentiable


def check_explainable(model, x):
    """Refuse, with one line naming the module, a network that differentiable LRP cannot explain
    correctly: a layer type without a rule here (e.g. ``nn.GELU``, ``nn.LayerNorm``), or a nonlinearity
    computed in a ``forward`` instead of by a module (``F.relu``, ``torch.tanh``, a product of two
    activations). ``x``: an input batch (one sample of it is run, in eval mode, without gradients).

    Returns the network's :class:`utils.lrp.explainable.Flow` (leaf modules in call order, layers whose
    epsilon rule is applied at their output). Raises :class:`UserError`
    ``"<module path> (<type>): <why>; <what to do>"``.
    """
    return trace(model, x)


def stabilize(value, eps):
    """``value + eps * sign(value)`` with sign(0) = 1 (zennit's convention)."""
    return value + eps * (value >= 0).to(value).mul(2).sub(1)


class BackwardMode:
    """Which gradient the modified layers give: ``lrp`` inside :meth:`DifferentiableLRP.relevance`,
    the network's true gradient otherwise (the training loss's own backward pass)."""

    def __init__(self):
        self.lrp = False

    @contextlib.contextmanager
    def relevance(self):
        self.lrp = True
        try:
            yield
        finally:
            self.lrp = False


class _EpsilonReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, eps, mode):
        a = x.clamp(min=0)
        ctx.save_for_backward(a)
        ctx.eps, ctx.mode = eps, mode
        return a

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        if ctx.mode.lrp:  # written with differentiable ops on the saved output: the heatmap is differentiated
            return grad * a / (a + ctx.eps), None, None
        return torch.ops.aten.threshold_backward(grad, a, 0), None, None  # the ReLU's own backward kernel


class _EpsilonOutput(torch.autograd.Function):
    """Identity on a linear layer's output ``z`` whose gradient, while heatmaps are computed, is
    ``grad * z / (z + eps * sign(z))``: that layer's epsilon rule, where no ReLU after it applies it."""

    @staticmethod
    def forward(ctx, z, eps, mode):
        ctx.save_for_backward(z)
        ctx.eps, ctx.mode = eps, mode
        return z.view_as(z)

    @staticmethod
    def backward(ctx, grad):
        if not ctx.mode.lrp:
            return grad, None, None
        (z,) = ctx.saved_tensors  # differentiable ops on the saved output: the heatmap is differentiated
        return grad * z / stabilize(z, ctx.eps), None, None


class _GradientOnlyOutsideLRP(torch.autograd.Function):
    """Identity whose gradient is zero while heatmaps are computed (and the identity otherwise)."""

    @staticmethod
    def forward(ctx, x, mode):
        ctx.mode = mode
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return (None if ctx.mode.lrp else grad), None


@contextlib.contextmanager
def epsilon_relu(model, eps, mode=None):
    """Inside the context every ``nn.ReLU`` of ``model`` back-propagates LRP-epsilon while ``mode.lrp``
    is set (always, without a ``mode``) and its true gradient otherwise; the forward is unchanged."""
    if mode is None:
        mode = BackwardMode()
        mode.lrp = True
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise UserError(f"{type(model).__name__} has no nn.ReLU: differentiable LRP needs ReLU networks")
    for module in relus:
        module.forward = lambda x, eps=eps: _EpsilonReLU.apply(x, eps, mode)
    try:
        yield
    finally:
        for module in relus:
            del module.forward  # back to the class's forward


class _TrainingBatchNorm(torch.autograd.Function):
    """A training-mode BatchNorm computed once: its value and running-statistics update are the
    module's own, its gradient is the exact one (through the batch statistics) for the training loss
    and, while heatmaps are computed, ``grad * weight / sqrt(var + eps)``: the batch's statistics are
    constants for each sample's relevance, but ``var`` (the batch variance, an input in the graph) keeps
    the heatmap a differentiable function of them. Returns the output and the batch mean."""

    @staticmethod
    def forward(ctx, x, weight, bias, var, module, mode):
        out, mean, invstd = torch.native_batch_norm(x, weight, bias, module.running_mean, module.running_var,
                                                    True, _running_update_factor(module), module.eps)
        ctx.mark_non_differentiable(mean)
        ctx.save_for_backward(x, weight, var, mean, invstd)
        ctx.mode, ctx.eps = mode, module.eps
        return out, mean

    @staticmethod
    def backward(ctx, grad, _mean):
        x, weight, var, mean, invstd = ctx.saved_tensors
        if ctx.mode.lrp:  # differentiable ops on the saved weight and variance: the heatmap is differentiated
            scale = (var + ctx.eps).rsqrt()
            scale = scale if weight is None else weight * scale
            return grad * scale.view(1, -1, *([1] * (x.dim() - 2))), None, None, None, None, None
        grad_x, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            grad, x, weight, None, None, mean, invstd, True, ctx.eps, list(ctx.needs_input_grad[:3]))
        return grad_x, grad_weight, grad_bias, None, None, None


def _running_update_factor(module):
    """What ``nn.BatchNorm`` does to its counters in a training forward; the momentum it updates with."""
    if not module.track_running_stats or module.num_batches_tracked is None:
        return 0.0 if module.momentum is None else module.momentum
    module.num_batches_tracked.add_(1)
    return 1.0 / float(module.num_batches_tracked) if module.momentum is None else module.momentum


_PLAIN_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)  # not SyncBatchNorm: it talks to other ranks


@contextlib.contextmanager
def batchnorm_constant_statistics(model, record, mode=None):
    """BatchNorm with its statistics as constants for each sample's relevance: running ones in eval
    mode, the batch's own in training mode. ``record[module] = (mean, var)`` as used.

    With a ``mode`` (this forward is also the model's training forward), a BatchNorm in training mode
    is the exact one outside heatmaps: it updates its running statistics once, and the training
    loss's gradient flows through the batch statistics as in a plain forward; heatmaps treat them as
    constants sample by sample, and their derivative w.r.t. the parameters flows through them (see
    the module docstring). Without one (a second pass over the same batch, which must not count
    twice), the running statistics are left alone and the batch statistics are detached: no loss is
    trained through such a pass.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def forward(module, x):
        if mode is not None and module.training and type(module) in _PLAIN_BATCHNORM:  # one pass, not two
            var, mean = torch.var_mean(x, [0] + list(range(2, x.dim())), unbiased=False)  # in the graph
            out, _ = _TrainingBatchNorm.apply(x, module.weight, module.bias, var, module, mode)
            record[module] = (mean, var)
            return out
        if module.training or module.running_mean is None:
            dims = [0] + list(range(2, x.dim()))
            var, mean = torch.var_mean(x.detach(), dims, unbiased=False)
        else:
            mean, var = module.running_mean, module.running_var
        record[module] = (mean, var)
        constant = F.batch_norm(x, mean, var, module.weight, module.bias, False, 0.0, module.eps)
        if mode is None or not module.training:
            return constant
        exact = type(module).forward(module, x)  # the value is the same; only its gradient differs
        return constant + _GradientOnlyOutsideLRP.apply(exact - constant, mode)

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
        self.mode = BackwardMode()  # LRP gradients inside relevance(), the true ones elsewhere
        self.flow = None  # what check_explainable found, on the first forward
        self._first_block = None  # (affine module, batchnorm or None, first relu), found on first forward
        self.logits = None  # of the last forward

    # --- forward ---------------------------------------------------------------------------------
    def forward(self, x, training=False):
        """Logits of ``x`` in a graph that heatmaps can be differentiated through.

        ``training``: this is also the forward pass of the training loss (ISNet's cross-entropy and
        heatmap loss share it, one forward per step): BatchNorm layers in training mode update their
        running statistics and back-propagate the loss exactly as in the model's own forward. The
        loss's backward pass always sees the true ReLU gradients; LRP's only apply to heatmaps.
        """
        if self.flow is None:  # once: refuse what cannot be explained before any heatmap is computed
            self.flow = check_explainable(self.model, x)
        if self.input_rule == "zb" and self._first_block is None:
            self._first_block = self._find_first_block()
        # z^B needs no gradient at the input, only at the first ReLU (which needs trainable weights or x)
        trainable_first = self.input_rule == "zb" and self._first_block[0].weight.requires_grad
        self.x = x if x.requires_grad or trainable_first else x.detach().requires_grad_(True)
        self.acts, handles = {}, []
        for name in self.flow.epsilon_outputs:  # before the recording hooks: they record its output
            handles.append(self._modules[name].register_forward_hook(
                lambda m, i, o: _EpsilonOutput.apply(o, self.eps, self.mode)))
        for name in self.layers:
            handles.append(self._modules[name].register_forward_hook(
                lambda m, i, o, name=name: self.acts.__setitem__(name, o)))
        if self.input_rule == "zb":  # the first block's pre-activation is z^B's denominator
            affine, _, relu = self._first_block
            handles.append(affine.register_forward_hook(
                lambda m, i, o: self.acts.setdefault("__first_affine__", o)))
            handles.append(relu.register_forward_hook(
                lambda m, i, o: self.acts.setdefault("__first_relu__", o)))
        try:
            self._bn_stats = {}
            with epsilon_relu(self.model, self.eps, self.mode), \
                    batchnorm_constant_statistics(self.model, self._bn_stats, self.mode if training else None):
                self.logits = self.model(self.x)
        finally:
            for handle in handles:
                handle.remove()
        return self.logits

    def logits_for(self, x, logits):
        """``logits`` if they come from this object's last forward (the training forward shared with
        the loss), else those of a new forward of ``x``."""
        return logits if logits is self.logits else self.forward(x.detach())

    # --- relevance -------------------------------------------------------------------------------
    def relevance(self, target, create_graph=True):
        """Heatmaps of ``target`` (N,), a function of this forward's logits; the graph is kept.

        ``create_graph=False`` gives plain heatmaps (no loss will be differentiated through them).
        """
        # z^B starts from the first ReLU's output: the gradient at the input itself is not needed
        first = [self.acts["__first_relu__"]] if self.input_rule == "zb" else [self.x]
        inputs = first + [self.acts[name] for name in self.layers]
        with self.mode.relevance():
            grads = torch.autograd.grad(target.sum(), inputs, create_graph=create_graph, retain_graph=True)
        scale = target / stabilize(target, self.eps) if self.output_epsilon else torch.ones_like(target)
        scale = scale.view(-1, *([1] * (self.x.dim() - 1)))
        if self.input_rule == "zb":
            rel_input = self._zb(self.acts["__first_relu__"] * grads[0])
        else:
            rel_input = self.x * grads[0]
        layers = {}
        for name, act, grad in zip(self.layers, inputs[1:], grads[1:]):
            layers[name] = act * grad * scale.view(-1, *([1] * (act.dim() - 1)))
        return {"input": rel_input * scale, "layers": layers}

    # --- z^B at the input ------------------------------------------------------------------------
    def _find_first_block(self):
        order = self.flow.order
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

    def _transposed(self, s, w_pos, w_neg):
        """``W+^T s`` and ``W-^T s``: the first layer's adjoint applied to ``s``, each shaped like the
        input. One transposed convolution with both weights stacked (its cost is mostly reading ``s``)."""
        affine, x = self._first_block[0], self.x
        if isinstance(affine, nn.Linear):
            return [(s @ weight).view_as(x) for weight in (w_pos, w_neg)]
        transpose = F.conv_transpose2d if isinstance(affine, nn.Conv2d) else F.conv_transpose1d
        size = [(n - 1) * st - 2 * p + d * (k - 1) + 1 for n, st, p, d, k in
                zip(s.shape[2:], affine.stride, affine.padding, affine.dilation, w_pos.shape[2:])]
        extra = tuple(want - got for want, got in zip(x.shape[2:], size))  # strides that drop pixels

        def apply(weight):
            return transpose(s, weight, None, affine.stride, affine.padding, extra, affine.groups, affine.dilation)

        if affine.groups != 1:  # stacking would mix the groups' input channels
            return [apply(w_pos), apply(w_neg)]
        return list(apply(torch.cat([w_pos, w_neg], 1)).chunk(2, 1))

    def _pre_activation(self):
        """The first block's output before its ReLU, BatchNorm statistics as constants: the merged
        layer applied to ``x``, taken from the forward pass instead of a second convolution."""
        out = self.acts["__first_affine__"]
        _, norm, _ = self._first_block
        if norm is None:
            return out
        mean, var = self._bn_stats[norm]
        shape = (1, -1) + (1,) * (out.dim() - 2)
        return (out - mean.view(shape)) * (norm.weight / torch.sqrt(var + norm.eps)).view(shape) + norm.bias.view(shape)

    def _zb(self, rel_out):
        x = self.x
        weight, bias = self._merged_params()
        low, high = torch.as_tensor(self.low).to(x), torch.as_tensor(self.high).to(x)
        w_pos, w_neg = weight.clamp(min=0), weight.clamp(max=0)
        one = (1,) + tuple(x.shape[1:])  # the bound images are the same for every sample: one each
        denominator = (self._pre_activation() - self._apply(low.expand(one), w_pos, bias.clamp(min=0))
                       - self._apply(high.expand(one), w_neg, bias.clamp(max=0)))
        s = rel_out / stabilize(denominator, 1e-6)
        # x W^T s - low W+^T s - high W-^T s, with W = W+ + W-: two transposes, not three
        pos, neg = self._transposed(s, w_pos, w_neg)
        return (x - low) * pos + (x - high) * neg


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
