"""torchvision VGGs (random init; local weights via ``pretrained_weights``).

torchvision is imported only when a VGG is built or its layers are asked for: importing it takes
seconds, which every process of a pipeline would pay otherwise.
"""
import functools

import torch
from torch import nn

from models.registry import register_model


def _model_fn(name):
    import torchvision.models

    return getattr(torchvision.models, name)


def _relu_names(name):
    """Names of the ReLUs that follow each conv in ``features``: the inspectable layers."""
    # built on the meta device: no memory, no initialisation (a full VGG16 costs seconds)
    with torch.device("meta"):
        features = _model_fn(name)(weights=None).features
    return tuple(f"features.{i}" for i, m in enumerate(features) if isinstance(m, nn.ReLU))


def _builder(name):
    def build(n_classes, img_size=224, in_channels=3):
        model = _model_fn(name)(weights=None, num_classes=n_classes)
        if in_channels != 3:
            first = model.features[0]
            model.features[0] = nn.Conv2d(in_channels, first.out_channels, 3, padding=1)
        return model

    return build


for _name in ("vgg11", "vgg16", "vgg11_bn", "vgg16_bn"):
    register_model(_name, layer_names=functools.partial(_relu_names, _name), canonizer="vgg")(_builder(_name))
