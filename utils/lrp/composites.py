"""Declarative LRP set-up: which composite and which canonizers a model uses are data.

Model specs (``models.registry.ModelSpec``) name a composite and a canonizer; these
registries turn the names into fresh zennit objects.
"""
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import EpsilonAlpha2Beta1Flat, EpsilonPlus, EpsilonPlusFlat
from zennit.torchvision import ResNetCanonizer, VGGCanonizer

from utils.errors import UserError

CANONIZERS = {
    "vgg": lambda: [VGGCanonizer()],
    "resnet": lambda: [ResNetCanonizer()],
    "merge_batchnorm": lambda: [SequentialMergeBatchNorm()],
}

COMPOSITES = {
    "epsilon_plus_flat": EpsilonPlusFlat,
    "epsilon_plus": EpsilonPlus,
    "epsilon_alpha2_beta1_flat": EpsilonAlpha2Beta1Flat,
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
