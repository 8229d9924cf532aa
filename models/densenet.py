"""torchvision DenseNets (random init; local weights via ``pretrained_weights``), with every
nonlinearity a module.

torchvision's ``DenseNet.forward`` applies its last ReLU and the global pooling functionally
(``F.relu``, ``F.adaptive_avg_pool2d``). LRP works on modules: zennit's rules are module hooks and the
differentiable LRP (ISNet) replaces the gradient of ``nn.ReLU`` modules, so a functional ReLU would
silently pass its plain gradient. ``ExplicitDenseNet`` holds torchvision's own ``features`` and
``classifier`` (same modules, same initialisation, same state-dict keys, so torchvision weights load
unchanged) and adds the two missing steps as parameter-free modules: ``features.relu5`` and
``avgpool``. It computes exactly torchvision's function (``tests/models/test_densenet_model.py``).

torchvision is imported when a model is built (importing it takes seconds).
"""
import re

import torch
from torch import nn

from models.registry import register_model


class ExplicitDenseNet(nn.Module):
    """``classifier(flatten(avgpool(features(x))))``; ``features`` ends with ``norm5`` and ``relu5``."""

    def __init__(self, n_classes, in_channels=3, growth_rate=32, block_config=(6, 12, 24, 16),
                 num_init_features=64, bn_size=4):
        from torchvision.models import DenseNet

        super().__init__()
        reference = DenseNet(growth_rate=growth_rate, block_config=block_config,
                             num_init_features=num_init_features, bn_size=bn_size, num_classes=n_classes)
        if in_channels != 3:
            reference.features.conv0 = nn.Conv2d(in_channels, num_init_features, 7, 2, 3, bias=False)
            nn.init.kaiming_normal_(reference.features.conv0.weight)  # torchvision's initialisation
        self.features = reference.features
        self.features.add_module("relu5", nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = reference.classifier

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    # torchvision's published DenseNet weights name dense-layer tensors 'norm.1', 'conv.2', ... (the
    # modules' older names); torchvision renames them when it loads such a file, and so do we.
    _LEGACY_NAME = re.compile(r"(denselayer\d+\.(?:norm|conv))\.([12])\.")

    @classmethod
    def adapt_state_dict(cls, state):
        """``state`` with legacy dense-layer keys (``...denselayer1.norm.1.weight``) renamed to the module
        names (``...denselayer1.norm1.weight``); read by ``models.get_model`` for ``pretrained_weights``."""
        return {cls._LEGACY_NAME.sub(r"\1\2.", key): value for key, value in state.items()}


def _not_in_place(model):
    # torchvision's dense layers use in-place ReLUs, which overwrite tensors that hooks and LRP need
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return model


# inspectable layers: the transitions' outputs (between dense blocks) and the last features (after relu5)
@register_model("densenet121", layer_names=("features.transition1", "features.transition2", "features.transition3",
                                            "features.relu5"),
                canonizer="densenet", default_layer="features.relu5")
def densenet121(n_classes, img_size=224, in_channels=3):
    return _not_in_place(ExplicitDenseNet(n_classes, in_channels))


@register_model("tiny_densenet", layer_names=("features.transition1", "features.transition2", "features.relu5"),
                canonizer="densenet", default_layer="features.transition2", tags=("small",))
def tiny_densenet(n_classes, img_size=64, in_channels=3):
    """The same torchvision blocks, three dense blocks of two layers, growth rate 4 (a few thousand weights)."""
    return _not_in_place(ExplicitDenseNet(n_classes, in_channels, growth_rate=4, block_config=(2, 2, 2),
                                          num_init_features=8, bn_size=2))
