"""torchvision ResNets (random init; local weights via ``pretrained_weights``)."""
from torch import nn
from torchvision.models import resnet18, resnet50

from models.registry import register_model


def _builder(model_fn):
    def build(n_classes, img_size=224, in_channels=3):
        model = model_fn(weights=None, num_classes=n_classes)
        if in_channels != 3:
            model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        return model

    return build


for _name, _fn in {"resnet18": resnet18, "resnet50": resnet50}.items():
    register_model(_name, layer_names=("layer1", "layer2", "layer3", "layer4"), canonizer="resnet",
                   default_layer="layer4")(_builder(_fn))
