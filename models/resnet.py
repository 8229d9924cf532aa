"""torchvision ResNets (random init; local weights via ``pretrained_weights``). torchvision is
imported when one is built (importing it takes seconds)."""
from torch import nn

from models.registry import register_model


def _builder(name):
    def build(n_classes, img_size=224, in_channels=3):
        import torchvision.models

        model = getattr(torchvision.models, name)(weights=None, num_classes=n_classes)
        if in_channels != 3:
            model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        return model

    return build


for _name in ("resnet18", "resnet50"):
    register_model(_name, layer_names=("layer1", "layer2", "layer3", "layer4"), canonizer="resnet",
                   default_layer="layer4")(_builder(_name))
