"""Classification losses, chosen by the config's ``loss`` key."""
import torch
import torch.nn.functional as F
from torch import nn

from utils.distributed import get_context
from utils.errors import UserError
from utils.registry import Registry


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


LOSSES = Registry("loss", {
    "cross_entropy": lambda counts: nn.CrossEntropyLoss(),
    "weighted_cross_entropy": lambda counts: WeightedCrossEntropy(weight=_class_weights(counts)),
    "bce": lambda counts: nn.BCEWithLogitsLoss(),  # multi-label targets (N, K) in {0, 1}
})


MULTI_LABEL = {"bce"}  # the losses that read multi-hot (N, K) targets; the others read one class per sample


def build_loss(name, class_counts, multi_label=False):
    """The loss ``name``; refuses one that does not fit the labels. Why: cross-entropy given multi-hot
    float targets does not fail, PyTorch reads them as class probabilities and trains something else."""
    if multi_label and name not in MULTI_LABEL:
        raise UserError(f"'loss': {name} needs one label per sample, but the data set is multi-label "
                        f"(multi-hot labels); use loss: {', '.join(sorted(MULTI_LABEL))}")
    if not multi_label and name in MULTI_LABEL:
        raise UserError(f"'loss': {name} needs multi-hot labels, but the data set has one label per sample; "
                        f"use loss: {', '.join(sorted(set(LOSSES) - MULTI_LABEL))}")
    return LOSSES[name](class_counts)
