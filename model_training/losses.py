"""Classification losses, chosen by the config's ``loss`` key."""
import torch
from torch import nn


def _class_weights(counts):
    counts = torch.as_tensor(counts, dtype=torch.float32).clamp(min=1)
    return counts.sum() / (len(counts) * counts)


LOSSES = {
    "cross_entropy": lambda counts: nn.CrossEntropyLoss(),
    "weighted_cross_entropy": lambda counts: nn.CrossEntropyLoss(weight=_class_weights(counts)),
    "bce": lambda counts: nn.BCEWithLogitsLoss(),  # multi-label targets (N, K) in {0, 1}
}


def build_loss(name, class_counts):
    return LOSSES[name](class_counts)
