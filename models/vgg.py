"""torchvision VGGs (random init; local weights via ``pretrained_weights``)."""
import torch
from torch import nn
from torchvision.models import vgg11, vgg11_bn, vgg16, vgg16_bn

from models.registry import register_model


def _relu_names(model_fn):
    """Names of the ReLUs that follow each conv in ``features``: the inspectable layers."""
    # built on the meta device: no memory, no initialisation (a full VGG16 costs seconds at every import)
    with torch.device("meta"):
        features = model_fn(weights=None).features
    return tuple(f"features.{i}" for i, m in enumerate(features) if isinstance(m, nn.ReLU))


def _builder(model_fn):
    def build(n_classes, img_size=224, in_channels=3):
        model = model_fn(weights=None, num_classes=n_classes)
        if in_channels != 3:
            first = model.features[0]
            model.features[0] = nn.Conv2d(in_channels, first.out_channels, 3, padding=1)
        return model

    return build


for _name, _fn in {"vgg11": vgg11, "vgg16": vgg16, "vgg11_bn": vgg11_bn, "vgg16_bn": vgg16_bn}.items():
    _layers = _relu_names(_fn)
    register_model(_name, layer_names=_layers, canonizer="vgg", default_layer=_layers[-1])(_builder(_fn))
