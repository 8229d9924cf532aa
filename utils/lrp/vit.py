"""Conservative propagation for vision transformers (Ali et al. 2022).

zennit has no rules for attention. In the backward pass we treat the softmax attention weights,
the LayerNorm scale (1/std) and the GELU gate as constants; gradient x input of the resulting
locally linear network is LRP with the AH and LN rules. Linear layers get the epsilon rule by
scaling the gradient at their output with ``z / (z + eps * sign(z))``.
"""
import contextlib
import math
import types

import torch
import torch.nn.functional as F
from torch import nn

from utils.lrp.attribution import Attribution, conditions_from, frozen_parameters, register_backend


class _EpsilonScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, eps):
        ctx.save_for_backward(z)
        ctx.eps = eps
        return z.clone()

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        sign = torch.where(z >= 0, 1.0, -1.0).to(z)
        return grad * z / (z + ctx.eps * sign), None


def _layer_norm(self, x):
    mean = x.mean(-1, keepdim=True)
    std = torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + self.eps).detach()
    out = (x - mean) / std
    return out * self.weight + self.bias if self.elementwise_affine else out


def _gelu(self, x):
    gate = torch.where(x.abs() > 1e-6, F.gelu(x) / x, torch.full_like(x, 0.5)).detach()
    return x * gate


def _attention(self, query, key, value, need_weights=False, **_):
    # torchvision's encoder blocks call self-attention with batch_first inputs
    n, t, d = query.shape
    heads, head_dim = self.num_heads, d // self.num_heads
    qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)
    q, k, v = (part.reshape(n, t, heads, head_dim).transpose(1, 2) for part in qkv.chunk(3, dim=-1))
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(head_dim), dim=-1).detach()
    out = (weights @ v).transpose(1, 2).reshape(n, t, d)
    return self.out_proj(out), None


@contextlib.contextmanager
def conservative(model, eps=1e-6):
    """Patch ``model`` in place for conservative propagation; restore it on exit."""
    patched, handles = [], []
    for module in model.modules():
        replacement = {nn.LayerNorm: _layer_norm, nn.GELU: _gelu, nn.MultiheadAttention: _attention}.get(type(module))
        if replacement is not None:
            module.forward = types.MethodType(replacement, module)
            patched.append(module)
        if isinstance(module, nn.Linear) and eps > 0:
            handles.append(module.register_forward_hook(lambda m, i, o: _EpsilonScale.apply(o, eps)))
    try:
        yield model
    finally:
        for module in patched:
            del module.forward
        for handle in handles:
            handle.remove()


@register_backend("conservative")
class ConservativeBackend:
    """Gradient x input on the conservatively patched transformer (any model, in fact)."""

    sees_forward_hooks = True  # autograd through the model's own forward pass

    def __init__(self, model, spec, composite=None, eps=1e-6):
        self.model, self.spec, self.eps = model, spec, eps

    @staticmethod
    def supports(model, spec):
        return True

    def attribute(self, x, targets=None, record_layers=(), conditions=None, start_layer=None, init_rel=None):
        conditions = conditions_from(targets, conditions, n=len(x))
        modules = dict(self.model.named_modules())
        layers = set(record_layers) | {k for c in conditions for k in c if k != "y"}
        if start_layer:
            layers.add(start_layer)
        outputs, handles = {}, []

        def record(name):
            def hook(module, inputs, output):
                output = output[0] if isinstance(output, tuple) else output
                masks = [c.get(name) for c in conditions]
                if any(m is not None for m in masks):
                    output = _MaskGrad.apply(output, _channel_mask(output, masks))
                outputs[name] = output
                output.retain_grad()
                return output

            return hook

        for name in layers:
            handles.append(modules[name].register_forward_hook(record(name)))
        x = x.detach().clone().requires_grad_(True)
        try:
            with frozen_parameters(self.model), conservative(self.model, self.eps):
                logits = self.model(x)
                if start_layer:
                    act = outputs[start_layer]
                    rel = init_rel(act.detach())
                    grad = torch.where(act.detach() != 0, rel / act.detach(), torch.zeros_like(rel))
                    act.backward(grad)
                    out = act.detach()
                else:
                    selection = torch.zeros_like(logits)
                    for i, cond in enumerate(conditions):
                        selection[i, cond.get("y", [])] = 1.0
                    logits.backward(selection)
                    out = logits.detach()
        finally:
            for handle in handles:
                handle.remove()
        relevances = {n: (outputs[n] * outputs[n].grad).detach() for n in record_layers
                      if outputs[n].grad is not None}
        activations = {n: outputs[n].detach() for n in record_layers}
        return Attribution((x * x.grad).detach(), out, relevances, activations)


class _MaskGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mask):
        ctx.save_for_backward(mask)
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def _channel_mask(output, masks):
    # channels are the last axis for token sequences (N, T, D), the second for conv maps
    channel_axis = -1 if output.dim() == 3 else 1
    mask = torch.zeros_like(output)
    for i, channels in enumerate(masks):
        if channels is None:
            mask[i] = 1.0
        elif channel_axis == -1:
            mask[i, ..., channels] = 1.0
        else:
            mask[i, channels] = 1.0
    return mask
