"""Small CPU models for the demo and the tests.

They are built from the same layer types as the large families (torchvision's ``BasicBlock``,
VGG-style ``features``/``classifier``), so they take exactly the same LRP and hook code paths.
"""
from torch import nn

from models.registry import register_model


class TinyVGG(nn.Module):
    """VGG-style: ``features`` (conv-BN-ReLU blocks with max pooling), ``avgpool``, ``classifier``."""

    def __init__(self, n_classes, in_channels=3, widths=(16, 32, 64, 64)):
        super().__init__()
        layers, channels = [], in_channels
        for i, width in enumerate(widths):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(channels, 64), nn.ReLU(),
                                        nn.Linear(64, n_classes))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


class TinyResNet(nn.Module):
    """A three-stage ResNet made of torchvision ``BasicBlock``s (16, 32, 64 channels)."""

    def __init__(self, n_classes, in_channels=3, widths=(16, 32, 64)):
        from torchvision.models.resnet import BasicBlock  # imported when needed: it takes seconds

        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        stages, channels = [], widths[0]
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or channels != width:
                downsample = nn.Sequential(nn.Conv2d(channels, width, 1, stride, bias=False),
                                           nn.BatchNorm2d(width))
            stages.append(BasicBlock(channels, width, stride, downsample))
            channels = width
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


@register_model("tiny_vgg", layer_names=("features.2", "features.6", "features.10", "features.14"),
                canonizer="vgg", default_layer="features.10", tags=("small",))
def tiny_vgg(n_classes, img_size=64, in_channels=3):
    return TinyVGG(n_classes, in_channels)


@register_model("tiny_resnet", layer_names=("layer1", "layer2", "layer3"), canonizer="resnet",
                default_layer="layer2", tags=("small",))
def tiny_resnet(n_classes, img_size=64, in_channels=3):
    return TinyResNet(n_classes, in_channels)
