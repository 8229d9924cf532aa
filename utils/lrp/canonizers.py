"""zennit canonizers for BatchNorm layers that do not sit where ``SequentialMergeBatchNorm`` expects them.

``SequentialMergeBatchNorm`` pairs a BatchNorm with the leaf registered just before it anywhere in the
model. In a DenseNet that leaf is often the last convolution of the previous dense layer, whose output
is *concatenated* with others before the BatchNorm reads it (the BatchNorm has more channels than that
convolution): merging them would be wrong. Two canonizers replace it for such models:

* :class:`SiblingMergeBatchNorm` merges a BatchNorm only into the conv/linear layer registered right
  before it *in the same parent* (DenseNet: ``conv0``/``norm0`` of the stem, ``conv1``/``norm2`` of each
  dense layer), whose output is the BatchNorm's input.
* :class:`BatchNormAsConvolution` routes every other BatchNorm (DenseNet's pre-activation ``norm1``, the
  transitions' ``norm``, ``norm5``: each follows a concatenation and precedes a ReLU, so it can be merged
  neither backwards nor into the next convolution) through an equal 1x1 depthwise convolution. A
  BatchNorm in eval mode *is* that affine per-channel layer; as a convolution it gets the composite's
  convolution rule (z+ in ``EpsilonPlus(Flat)``, epsilon in the ``epsilon`` composite) instead of no
  rule at all, where zennit would pass ``weight / std`` times the relevance and break conservation.

The fast engine (``utils.lrp.fast.graph``) reads :func:`sibling_merge_pairs` to merge the same pairs
and applies the same rule to the other BatchNorms.
"""
import torch
from torch import nn
from zennit.canonizers import AttributeCanonizer, MergeBatchNorm
from zennit.types import BatchNorm, Linear

_CONVOLUTIONS = {nn.BatchNorm1d: nn.Conv1d, nn.BatchNorm2d: nn.Conv2d, nn.BatchNorm3d: nn.Conv3d}


def sibling_merge_pairs(model):
    """``{linear: batch_norm}`` for each BatchNorm registered right after a conv/linear layer of the same
    parent module (a parent applies its children in registration order in torchvision's models; the fast
    engine checks that the pair is also adjacent in the forward pass)."""
    pairs = {}
    for parent in model.modules():
        children = list(parent.children())
        for first, second in zip(children, children[1:]):
            if isinstance(first, Linear) and isinstance(second, BatchNorm):
                pairs[first] = second
    return pairs


class SiblingMergeBatchNorm(MergeBatchNorm):
    """BatchNorm merged into the conv/linear layer just before it in the same parent (see the module
    docstring); the BatchNorm then computes ``x / sqrt(1 + eps)``, as with zennit's own merges."""

    def apply(self, root_module):
        instances = []
        for linear, batch_norm in sibling_merge_pairs(root_module).items():
            instance = self.copy()
            instance.register((linear,), batch_norm)
            instances.append(instance)
        return instances


class BatchNormAsConvolution(AttributeCanonizer):
    """Every BatchNorm that :class:`SiblingMergeBatchNorm` does not merge computes its eval-mode map
    through an attached 1x1 depthwise convolution (``canonizer_convolution``: weight ``gamma / std``,
    bias ``beta - mean * gamma / std``), which the composite gives its convolution rule. Removing the
    canonizer restores the BatchNorm's own forward."""

    def __init__(self):
        super().__init__(None)

    def apply(self, root_module):
        merged = set(sibling_merge_pairs(root_module).values())
        instances = []
        for module in root_module.modules():
            if type(module) in _CONVOLUTIONS and module not in merged and module.running_var is not None:
                instance = self.copy()
                instance.register(module, {"canonizer_convolution": _as_convolution(module),
                                           "forward": self._forward.__get__(module)})
                instances.append(instance)
        return instances

    def copy(self):
        return BatchNormAsConvolution()

    @staticmethod
    def _forward(self, x):
        if x.dim() == 2:  # BatchNorm1d over (N, C): a convolution needs a length axis
            return self.canonizer_convolution(x.unsqueeze(-1)).squeeze(-1)
        return self.canonizer_convolution(x)


def _as_convolution(batch_norm):
    channels, weight = batch_norm.num_features, batch_norm.running_var
    conv = _CONVOLUTIONS[type(batch_norm)](channels, channels, 1, groups=channels, bias=True,
                                           dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        scale = (batch_norm.running_var + batch_norm.eps).rsqrt()
        if batch_norm.weight is not None:
            scale = scale * batch_norm.weight
        shift = -batch_norm.running_mean * scale
        if batch_norm.bias is not None:
            shift = shift + batch_norm.bias
        conv.weight.copy_(scale.view(channels, *(1,) * (conv.weight.dim() - 1)))
        conv.bias.copy_(shift)
    return conv.requires_grad_(False)
