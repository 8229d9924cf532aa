"""Leaves of the graph: one module, its eval-mode forward, and its LRP rule in closed form.

The rules are those of zennit's ``EpsilonPlus(Flat)`` and ``EpsilonAlpha2Beta1Flat`` composites
after its canonizers:

* convolutions: z+ (``ZPlus``) or alpha2-beta1 (``AlphaBeta(2, 1)``), linear layers: epsilon
  (``Epsilon``), the first linear layer of the model: flat (``Flat``) when the composite asks for it;
* BatchNorm after a conv/linear layer is merged into it, the BatchNorm itself becomes the map
  ``x / sqrt(1 + eps)`` (what zennit's merge leaves behind) and passes the gradient;
* BatchNorm not merged: no rule, the gradient (a per-channel scale); with the ``densenet`` canonizer
  (``BatchNormAsConvolution``) it is a 1x1 depthwise convolution with the convolutions' rule instead;
* activations: relevance passes unchanged (``Pass``); dropout and identity are the identity;
* average pooling: ``Norm`` (epsilon without parameters); max pooling and flattening: no rule,
  the gradient (relevance goes to the arg-max / is reshaped).

Each rule is evaluated with plain tensor operations, without autograd: a z+ convolution costs
one convolution with the positive weights and one transposed convolution. The same operations
are differentiable (in-place only where autograd allows it, see ``nodes.divide``), so a heatmap
can also enter a training loss.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from models.pooling import max_pool2d
from utils.lrp.fast.nodes import EPSILON, Node, Unsupported, divide, stabilize


class Leaf(Node):
    """One module. ``sign`` says what the module does to a non-negative input."""

    sign = "any"  # "nonneg": output >= 0 always; "keep": output >= 0 if input >= 0; "any"

    def __init__(self, name, module):
        self.name, self.module = name, module
        self.nonneg_in = False

    def bind(self, nonneg_in):
        self.nonneg_in = nonneg_in
        return {"nonneg": True, "keep": nonneg_in, "any": False}[self.sign]


# --- conv / linear ---------------------------------------------------------------------------


class Affine(Leaf):
    """A conv or linear layer with one of the rules ``zplus``, ``alpha_beta``, ``epsilon``, ``flat``.

    ``batch_norm`` is the BatchNorm that zennit's ``SequentialMergeBatchNorm`` merges into this
    layer; the merged parameters are recomputed at every call because the model may be training.
    What zennit leaves of that BatchNorm, a constant factor ``gain = 1 / sqrt(1 + eps)``, is
    folded into this layer's weights (forward) and transposed weights (backward) whenever this
    layer's own output is neither recorded nor conditioned: two passes over the feature map less.
    """

    def __init__(self, name, module, rule, batch_norm=None):
        super().__init__(name, module)
        if rule not in ("zplus", "alpha_beta", "epsilon", "flat"):
            raise ValueError(rule)
        self.rule, self.batch_norm = rule, batch_norm

    def params(self, trace):
        weight, bias = self.module.weight, self.module.bias
        if self.batch_norm is None:
            return weight, bias
        bn = self.batch_norm
        mean, var = trace.statistics_of(bn)
        scale = bn.weight / (var + bn.eps) ** 0.5
        bias = torch.zeros(1, dtype=weight.dtype, device=weight.device) if bias is None else bias
        weight = weight * scale.view(-1, *(1,) * (weight.dim() - 1))
        return weight, (bias - mean) * scale + bn.bias

    def absorbs_batch_norm(self, trace):
        return self.batch_norm is not None and self.name not in trace.recorded and self.name not in trace.masked

    def forward(self, x, trace):
        weight, bias = self.params(trace)
        trace.save(self, (x, weight, bias))
        if self.absorbs_batch_norm(trace):
            gain = merged_batch_norm_gain(self.batch_norm)
            return self.apply(x, weight * gain, bias * gain)
        return self.apply(x, weight, bias)

    def backward(self, r, trace):
        x, weight, bias = trace.pop(self)
        gain = merged_batch_norm_gain(self.batch_norm) if self.absorbs_batch_norm(trace) else 1.0
        return getattr(self, self.rule)(x, weight, bias, r, gain)

    def zplus(self, x, weight, bias, r, gain):
        """z+: the positive part of the layer, ``x+ W+ + b+ + x- W-``, distributes ``r``.

        That part is >= 0, where zennit's stabilizer adds +eps everywhere: eps joins the bias.
        """
        w_pos = weight.clamp(min=0)
        b_eps = bias.clamp(min=0) + EPSILON if bias is not None else \
            torch.full((weight.shape[0],), EPSILON, dtype=weight.dtype, device=weight.device)
        if self.nonneg_in:  # a ReLU output: the negative half is zero, skip its two products
            z = self.apply(x, w_pos, b_eps)
            s = divide(r, z)
            return self.adjoint(s, x, _scaled(w_pos, gain)).mul_(x)
        x_pos, x_neg, w_neg = x.clamp(min=0), x.clamp(max=0), weight.clamp(max=0)
        z = self.apply(x_pos, w_pos, b_eps).add_(self.apply(x_neg, w_neg, None))
        s = divide(r, z)
        r_in = self.adjoint(s, x, _scaled(w_pos, gain)).mul_(x_pos)
        return r_in.add_(self.adjoint(s, x, _scaled(w_neg, gain)).mul_(x_neg))

    alpha, beta = 2.0, 1.0  # zennit's AlphaBeta(alpha=2, beta=1) of EpsilonAlpha2Beta1(Flat)

    def alpha_beta(self, x, weight, bias, r, gain):
        """alpha-beta: the positive part ``z+ = x+ W+ + b+ + x- W-`` distributes ``alpha * r``, the
        negative part ``z- = x+ W- + b- + x- W+`` takes ``beta * r`` away (zennit's ``AlphaBeta``).

        ``z+ >= 0``, so zennit's stabilizer adds +eps there (eps joins the bias as in z+); ``z-`` is
        stabilized by sign.
        """
        w_pos, w_neg = weight.clamp(min=0), weight.clamp(max=0)
        b_pos = bias.clamp(min=0) + EPSILON if bias is not None else \
            torch.full((weight.shape[0],), EPSILON, dtype=weight.dtype, device=weight.device)
        b_neg = bias.clamp(max=0) if bias is not None else None
        if self.nonneg_in:  # a ReLU output: the negative half of the input is zero
            s_pos = r / self.apply(x, w_pos, b_pos)
            s_neg = r / stabilize(self.apply(x, w_neg, b_neg))
            r_in = self.adjoint(s_pos, x, _scaled(w_pos, gain * self.alpha))
            return r_in.sub_(self.adjoint(s_neg, x, _scaled(w_neg, gain * self.beta))).mul_(x)
        x_pos, x_neg = x.clamp(min=0), x.clamp(max=0)
        s_pos = r / self.apply(x_pos, w_pos, b_pos).add_(self.apply(x_neg, w_neg, None))
        s_neg = r / stabilize(self.apply(x_pos, w_neg, b_neg).add_(self.apply(x_neg, w_pos, None)))
        positive = (self.adjoint(s_pos, x, _scaled(w_pos, gain)).mul_(x_pos)
                    .add_(self.adjoint(s_pos, x, _scaled(w_neg, gain)).mul_(x_neg)))
        negative = (self.adjoint(s_neg, x, _scaled(w_neg, gain)).mul_(x_pos)
                    .add_(self.adjoint(s_neg, x, _scaled(w_pos, gain)).mul_(x_neg)))
        return positive.mul_(self.alpha).sub_(negative.mul_(self.beta))

    def epsilon(self, x, weight, bias, r, gain):
        """epsilon: ``x W`` distributes ``r`` over the inputs, denominator kept off zero."""
        s = r / stabilize(self.apply(x, weight, bias))
        return self.adjoint(s, x, _scaled(weight, gain)).mul_(x)

    def flat(self, x, weight, bias, r, gain):
        """flat: every input in the receptive field gets an equal share (weights and input = 1)."""
        return self.flat_relevance(x, r * gain if gain != 1.0 else r)


def merged_batch_norm_gain(bn):
    """What zennit's merge leaves of a BatchNorm: ``x / sqrt(1 + eps)`` (mean 0, variance 1)."""
    return (1.0 + bn.eps) ** -0.5


def _scaled(weight, gain):
    return weight if gain == 1.0 else weight * gain


class Conv(Affine):
    """``nn.Conv1d/2d/3d`` with zero padding (any stride, dilation, groups)."""

    def __init__(self, name, module, rule, batch_norm=None):
        super().__init__(name, module, rule, batch_norm)
        if module.padding_mode != "zeros":
            raise Unsupported(f"{type(module).__name__} with padding_mode='{module.padding_mode}' at '{name}'")
        self.dims = module.weight.dim() - 2
        self.padding = _numeric_padding(module, name)

    def apply(self, x, weight, bias):
        m = self.module
        return torch.ops.aten.convolution(x, weight, bias, m.stride, self.padding, m.dilation, False,
                                          (0,) * self.dims, m.groups)

    def adjoint(self, s, x, weight):
        """The transposed convolution: gradient of ``apply`` with respect to its input."""
        m = self.module
        return torch.ops.aten.convolution_backward(s, x, weight, None, m.stride, self.padding, m.dilation,
                                                   False, (0,) * self.dims, m.groups, (True, False, False))[0]

    def flat_relevance(self, x, r):
        # With all-ones weights every output channel of a group has the same denominator, so the
        # channels of a group are summed first and spread with a single ones-filter per group.
        groups, kernel = self.module.groups, self.module.weight.shape[1:]
        ones_filter = torch.ones((groups, *kernel), dtype=x.dtype, device=x.device)
        ones_input = torch.ones((1, *x.shape[1:]), dtype=x.dtype, device=x.device)
        z = self.apply(ones_input, ones_filter, None)  # (1, groups, *out): window sizes, > 0
        s = r.unflatten(1, (groups, -1)).sum(2) / z.add_(EPSILON)
        return self.adjoint(s, x, ones_filter)


class Linear(Affine):
    """``nn.Linear``."""

    def apply(self, x, weight, bias):
        return F.linear(x, weight, bias)

    def adjoint(self, s, x, weight):
        return s @ weight

    def flat_relevance(self, x, r):
        share = r.sum(-1, keepdim=True) / (x.shape[-1] + EPSILON)  # every output sums all inputs
        return share.expand(x.shape).contiguous()


def _numeric_padding(conv, name):
    """Padding as integers per side; 'same' only where it is symmetric (odd effective kernel)."""
    if conv.padding == "valid":
        return (0,) * (conv.weight.dim() - 2)
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        if any(t % 2 for t in total):
            raise Unsupported(f"{type(conv).__name__} with asymmetric padding='same' at '{name}'")
        return tuple(t // 2 for t in total)
    return tuple(conv.padding)


# --- batch norm ------------------------------------------------------------------------------


class BatchNorm(Leaf):
    """Eval-mode BatchNorm. ``merged_into``: the layer zennit folded it into; what is left of it
    computes ``x / sqrt(1 + eps)`` (mean 0, variance 1, weight 1, bias 0 plus ``eps``). zennit
    keeps that factor in the logits and in the relevance, so do we (usually inside that layer)."""

    def __init__(self, name, module, merged_into=None):
        super().__init__(name, module)
        self.merged_into = merged_into
        merged = merged_into is not None
        if module.running_var is None:
            raise Unsupported(f"{type(module).__name__} without running statistics at '{name}'")
        if merged and module.weight is None:
            raise Unsupported(f"{type(module).__name__} without affine parameters merged at '{name}'")
        self.merged = merged
        self.sign = "keep" if merged else "any"

    def scale(self, x, trace):
        """The gradient of the map: a positive constant when merged, per channel otherwise."""
        bn = self.module
        if self.merged:
            return merged_batch_norm_gain(bn)
        _, var = trace.statistics_of(bn)
        weight = torch.ones_like(var) if bn.weight is None else bn.weight
        return (weight / (var + bn.eps) ** 0.5).view(-1, *(1,) * (x.dim() - 2))

    def forward(self, x, trace):
        bn = self.module
        if self.merged and self.merged_into.absorbs_batch_norm(trace):
            return x
        if self.merged:
            return x * self.scale(x, trace)
        return F.batch_norm(x, *trace.statistics_of(bn), bn.weight, bn.bias, False, 0.0, bn.eps)

    def backward(self, r, trace):
        if self.merged and self.merged_into.absorbs_batch_norm(trace):
            return r
        return r * self.scale(r, trace)


class BatchNormLayer(Affine):
    """Eval-mode BatchNorm as a layer of its own: the per-channel affine map ``x * scale + shift``, i.e. a
    1x1 depthwise convolution, with a convolution rule (``zplus``, ``alpha_beta``, ``epsilon``); what
    zennit computes after ``utils.lrp.canonizers.BatchNormAsConvolution``. The rules of :class:`Affine`
    run unchanged with element-wise ``apply`` and ``adjoint``."""

    def __init__(self, name, module, rule):
        if module.running_var is None:
            raise Unsupported(f"{type(module).__name__} without running statistics at '{name}'")
        super().__init__(name, module, rule)

    def params(self, trace):
        bn = self.module
        mean, var = trace.statistics_of(bn)
        scale = (var + bn.eps) ** -0.5
        scale = scale if bn.weight is None else bn.weight * scale
        shift = -mean * scale
        return scale, shift if bn.bias is None else shift + bn.bias

    @staticmethod
    def _channels(v, x):
        return v.view(-1, *(1,) * (x.dim() - 2))

    def apply(self, x, weight, bias):
        y = x * self._channels(weight, x)
        return y if bias is None else y + self._channels(bias, x)

    def adjoint(self, s, x, weight):
        return s * self._channels(weight, s)


# --- element-wise and reshaping ----------------------------------------------------------------


class Pass(Leaf):
    """Activations: relevance passes through unchanged (zennit's ``Pass``)."""

    NONNEG = (nn.ReLU, nn.ReLU6, nn.Sigmoid)

    def __init__(self, name, module):
        super().__init__(name, module)
        self.sign = "nonneg" if isinstance(module, self.NONNEG) else "any"

    def forward(self, x, trace):
        if type(self.module) is nn.ReLU:
            return F.relu(x)
        # never let an in-place activation overwrite a tensor another rule has stored
        return self.module.forward(x.clone() if getattr(self.module, "inplace", False) else x)

    def backward(self, r, trace):
        return r


class Identity(Leaf):
    """Dropout (eval mode) and ``nn.Identity``: no rule, the gradient is the identity."""

    sign = "keep"

    def forward(self, x, trace):
        return x

    def backward(self, r, trace):
        return r


class Flatten(Leaf):
    """``nn.Flatten`` (or the ``torch.flatten(x, 1)`` of a model's forward): reshape back."""

    sign = "keep"

    def forward(self, x, trace):
        trace.save(self, x.shape)
        return self.module(x)

    def backward(self, r, trace):
        return r.reshape(trace.pop(self))


# --- pooling ----------------------------------------------------------------------------------


class MaxPool(Leaf):
    """Max pooling: no rule, the gradient routes relevance to the arg-max of each window
    (PyTorch's own max-pooling backward kernel with the indices of the forward pass)."""

    sign = "keep"

    def forward(self, x, trace):
        m = self.module
        pool = max_pool2d if isinstance(m, nn.MaxPool2d) else getattr(F, f"max_pool{x.dim() - 2}d")
        y, indices = pool(x, m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode,
                          return_indices=True)
        trace.save(self, (x, indices))
        return y

    def backward(self, r, trace):
        x, indices = trace.pop(self)
        m, dims = self.module, x.dim() - 2
        args = [_tuple(v, dims) for v in (m.kernel_size, m.stride or m.kernel_size, m.padding, m.dilation)]
        if dims == 1:  # 1D pooling is 2D pooling over a (1, length) map, as in PyTorch itself
            args = [(one, *v) for one, v in zip((1, 1, 0, 1), args)]
            return torch.ops.aten.max_pool2d_with_indices_backward(
                r.unsqueeze(2), x.unsqueeze(2), *args, m.ceil_mode, indices.unsqueeze(2)).squeeze(2)
        backward = torch.ops.aten.max_pool2d_with_indices_backward if dims == 2 else \
            torch.ops.aten.max_pool3d_with_indices_backward
        return backward(r, x, *args, m.ceil_mode, indices)


class AvgPool(Leaf):
    """Average pooling (plain and adaptive): zennit's ``Norm`` rule, ``x * A^T (r / stab(A x))``."""

    sign = "keep"

    def forward(self, x, trace):
        y = self.module(x)
        trace.save(self, (x, y))
        return y

    def backward(self, r, trace):
        x, y = trace.pop(self)
        return x * _avg_pool_adjoint(self.module, r / stabilize(y), x)


ADAPTIVE_AVG = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)


def _avg_pool_adjoint(module, s, x):
    """Transpose of the average pooling ``module`` applied to ``s``: a tensor of the input's shape
    (or one that broadcasts to it)."""
    adaptive = isinstance(module, ADAPTIVE_AVG)
    if adaptive and all(n == 1 for n in s.shape[2:]):  # global pooling: spread evenly
        return s / math.prod(x.shape[2:])
    if x.dim() == 3:  # 1D pooling is 2D pooling over a (1, length) map, as in PyTorch itself
        return _avg_pool_adjoint_2d(module, s.unsqueeze(2), x.unsqueeze(2), one_d=True).squeeze(2)
    return _avg_pool_adjoint_2d(module, s, x)


def _avg_pool_adjoint_2d(module, s, x, one_d=False):
    dims = x.dim() - 2
    if isinstance(module, ADAPTIVE_AVG):
        backward = torch.ops.aten._adaptive_avg_pool2d_backward if dims == 2 else \
            torch.ops.aten._adaptive_avg_pool3d_backward
        return backward(s, x)
    kernel, stride, padding = (_tuple(v, 1 if one_d else dims) for v in
                               (module.kernel_size, module.stride or module.kernel_size, module.padding))
    if one_d:
        kernel, stride, padding = (1, *kernel), (1, *stride), (0, *padding)
    backward = torch.ops.aten.avg_pool2d_backward if dims == 2 else torch.ops.aten.avg_pool3d_backward
    return backward(s, x, kernel, stride, padding, module.ceil_mode, module.count_include_pad,
                    getattr(module, "divisor_override", None))


def _tuple(value, n):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n
