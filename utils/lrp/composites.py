"""Declarative LRP set-up: which composite and which canonizers a model uses are data.

Model specs (``models.registry.ModelSpec``) name a composite and a canonizer; these
registries turn the names into fresh zennit objects.
"""
import torch
from zennit.canonizers import AttributeCanonizer, SequentialMergeBatchNorm
from zennit.composites import LAYER_MAP_BASE, EpsilonAlpha2Beta1Flat, EpsilonPlus, EpsilonPlusFlat, LayerMapComposite
from zennit.layer import Sum
from zennit.rules import Epsilon
from zennit.types import Convolution

from utils.errors import UserError
from utils.lrp.canonizers import BatchNormAsConvolution, SiblingMergeBatchNorm


class ExplicitResidualCanonizer(AttributeCanonizer):
    """Routes the residual sum of blocks computing ``act(branch(x) + shortcut(x))`` through a
    zennit ``Sum`` layer, so LRP splits relevance between the two paths in proportion to their
    contributions (the ``Norm`` rule) instead of passing the plain gradient.

    A block opts in with ``explicit_residual = True`` and the modules ``branch``, ``shortcut``
    and ``act`` (e.g. ``models.ecg.Bottleneck1d``); removing the canonizer restores its forward.
    """

    def __init__(self):
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name, module):
        if not getattr(type(module), "explicit_residual", False):
            return None
        return {"forward": cls._forward.__get__(module), "canonizer_sum": Sum()}

    @staticmethod
    def _forward(self, x):
        return self.act(self.canonizer_sum(torch.stack([self.shortcut(x), self.branch(x)], dim=-1)))


def _torchvision_canonizer(name):
    """zennit's canonizer ``name`` for torchvision models, imported when one is made (zennit.torchvision
    imports torchvision, which takes seconds)."""
    def make():
        import zennit.torchvision

        return [getattr(zennit.torchvision, name)()]

    return make


class EpsilonComposite(LayerMapComposite):
    """The epsilon rule on every convolution and linear layer (``epsilon``: zennit's default 1e-6), the
    input layer included: what the differentiable LRP of ISNet and RRR computes with its gradient input
    rule, so the three backends can be compared on one composite (zennit has no such composite)."""

    def __init__(self, canonizers=None, epsilon=1e-6):
        super().__init__(LAYER_MAP_BASE + [(Convolution, Epsilon(epsilon)), (torch.nn.Linear, Epsilon(epsilon))],
                         canonizers=canonizers)


CANONIZERS = {
    "vgg": _torchvision_canonizer("VGGCanonizer"),
    "resnet": _torchvision_canonizer("ResNetCanonizer"),
    "merge_batchnorm": lambda: [SequentialMergeBatchNorm()],
    # BatchNorm merged into the preceding conv of every Sequential, then the residual sum split
    "xresnet1d": lambda: [SequentialMergeBatchNorm(), ExplicitResidualCanonizer()],
    # BatchNorm merged into the conv it follows in the same parent, every other BatchNorm (after a
    # concatenation) a depthwise convolution with the composite's rule (utils.lrp.canonizers)
    "densenet": lambda: [SiblingMergeBatchNorm(), BatchNormAsConvolution()],
}

COMPOSITES = {
    "epsilon_plus_flat": EpsilonPlusFlat,
    "epsilon_plus": EpsilonPlus,
    "epsilon_alpha2_beta1_flat": EpsilonAlpha2Beta1Flat,
    "epsilon": EpsilonComposite,
}


def make_canonizers(name):
    if name is None:
        return []
    if name not in CANONIZERS:
        raise UserError(f"unknown canonizer '{name}'; valid names: {', '.join(sorted(CANONIZERS))}")
    return CANONIZERS[name]()


def make_composite(name, canonizer=None):
    """A fresh zennit composite ``name`` with the canonizers registered as ``canonizer``."""
    if name not in COMPOSITES:
        raise UserError(f"unknown LRP composite '{name}'; valid names: {', '.join(sorted(COMPOSITES))}")
    return COMPOSITES[name](canonizers=make_canonizers(canonizer))
