"""Classification losses, chosen by the config's ``loss`` key."""
import torch
import torch.nn.functional as F
from torch import nn

from utils.distributed import get_context


def _class_weights(counts):
    counts = torch.as_tensor(counts, dtype=torch.float32).clamp(min=1)
    return counts.sum() / (len(counts) * counts)


class WeightedCrossEntropy(nn.CrossEntropyLoss):
    """Class-weighted cross-entropy: ``sum(w_y * loss) / sum(w_y)`` over the batch.

    Under ``torchrun`` the denominator is the sum over the *global* batch: with each rank's own
    sum, ranks holding different class mixes would be weighed differently than in one process.
    """

    def forward(self, logits, target):
        context = get_context()
        if not context.enabled:
            return super().forward(logits, target)
        weighted = F.cross_entropy(logits, target, weight=self.weight, reduction="sum")
        total_weight = context.sum([float(self.weight[target].sum())])[0]
        return context.mean_share(weighted, total_weight)


LOSSES = {
    "cross_entropy": lambda counts: nn.CrossEntropyLoss(),
    "weighted_cross_entropy": lambda counts: WeightedCrossEntropy(weight=_class_weights(counts)),
    "bce": lambda counts: nn.BCEWithLogitsLoss(),  # multi-label targets (N, K) in {0, 1}
}


def build_loss(name, class_counts):
    return LOSSES[name](class_counts)
