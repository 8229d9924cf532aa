"""1-D models for 12-lead ECGs ``(N, leads, time)``: an xresnet1d50 and a small CNN.

``XResNet1d`` follows the "bag of tricks" ResNet (xresnet) adapted to signals: a three-convolution
stem, bottleneck blocks whose shortcut average-pools before its 1x1 convolution when it
downsamples, and the last BatchNorm of every residual branch initialised to zero so that each
block starts as the identity. Blocks keep their residual sum explicit (``branch``, ``shortcut``,
``act``, ``explicit_residual = True``) so the LRP canonizer ``xresnet1d`` can route it through a
summation layer; every conv-BN pair sits in a ``Sequential`` so BatchNorm can be merged.
"""
from torch import nn

from models.registry import register_model


def conv_bn(in_channels, out_channels, kernel_size, stride=1, zero_bn=False):
    """Conv1d followed by BatchNorm1d, in one ``Sequential`` (so the canonizer can merge them)."""
    bn = nn.BatchNorm1d(out_channels)
    nn.init.constant_(bn.weight, 0.0 if zero_bn else 1.0)
    return [nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False), bn]


class Bottleneck1d(nn.Module):
    """1x1 -> k -> 1x1 convolutions (expansion 4) plus a shortcut; ``act(branch(x) + shortcut(x))``."""

    expansion = 4
    explicit_residual = True  # read by utils.lrp.composites: the canonizer may split the sum

    def __init__(self, in_channels, width, stride=1, kernel_size=5):
        super().__init__()
        out_channels = width * self.expansion
        self.branch = nn.Sequential(*conv_bn(in_channels, width, 1), nn.ReLU(),
                                    *conv_bn(width, width, kernel_size, stride), nn.ReLU(),
                                    *conv_bn(width, out_channels, 1, zero_bn=True))
        shortcut = []
        if stride != 1:  # xresnet: pool, then project, so no input sample is skipped
            shortcut.append(nn.AvgPool1d(stride, ceil_mode=True))
        if in_channels != out_channels:
            shortcut += conv_bn(in_channels, out_channels, 1)
        self.shortcut = nn.Sequential(*shortcut)  # empty Sequential: the identity
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.branch(x) + self.shortcut(x))


class XResNet1d(nn.Module):
    def __init__(self, n_classes, in_channels=12, layers=(3, 4, 6, 3), widths=(64, 128, 256, 512),
                 stem=(32, 32, 64), kernel_size=5):
        super().__init__()
        stem_layers, channels = [], in_channels
        for i, width in enumerate(stem):
            stem_layers += [*conv_bn(channels, width, kernel_size, stride=2 if i == 0 else 1), nn.ReLU()]
            channels = width
        stem_layers.append(nn.MaxPool1d(3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem_layers)
        stages = []
        for i, (n_blocks, width) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n_blocks):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(Bottleneck1d(channels, width, stride, kernel_size))
                channels = width * Bottleneck1d.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(self.avgpool(x).flatten(1))


class TinyCNN1d(nn.Module):
    """VGG-style for signals: ``features`` (conv-BN-ReLU blocks with max pooling), ``avgpool``, ``classifier``."""

    def __init__(self, n_classes, in_channels=12, widths=(16, 32, 64, 64), kernel_sizes=(7, 7, 5, 5)):
        super().__init__()
        layers, channels = [], in_channels
        for i, (width, kernel_size) in enumerate(zip(widths, kernel_sizes)):
            if i > 0:
                layers.append(nn.MaxPool1d(2))
            layers += [*conv_bn(channels, width, kernel_size), nn.ReLU()]
            channels = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool1d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(channels, 64), nn.ReLU(), nn.Linear(64, n_classes))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)))


@register_model("xresnet1d50", layer_names=("layer1", "layer2", "layer3", "layer4"), canonizer="xresnet1d",
                modality="signal", default_layer="layer3")
def xresnet1d50(n_classes, img_size=None, in_channels=12):
    return XResNet1d(n_classes, in_channels)


@register_model("tiny_cnn1d", layer_names=("features.2", "features.6", "features.10", "features.14"),
                canonizer="vgg", modality="signal", default_layer="features.10", tags=("small",))
def tiny_cnn1d(n_classes, img_size=None, in_channels=12):
    return TinyCNN1d(n_classes, in_channels)
