"""RRR (Right for the Right Reasons, Ross et al. 2017): penalise the explanation inside the artifact.

``L = CE + lamb * mean over samples with a mask of penalty(E(x), M)`` with the explanation ``E``
(``rrr_explanation``):

* ``gradient``: ``grad_x sum_k log p_k(x)`` (the published loss; for multi-hot labels ``p_k`` is
  label k's sigmoid, as the ``bce`` loss trains it);
* ``lrp`` (**ours**, in the spirit of "Right for Better Reasons"): the differentiable epsilon-LRP
  heatmap of the true class's logit (``epsilon`` and ``input_rule`` as for ISNet), from the same
  forward as the training loss. It penalises relevance instead of a gradient that need not follow
  it (see the caveat below). Lowering epsilon-LRP relevance on the artifact need not lower the
  relevance the evaluation measures there, which uses z+ on the convolutions.
* ``lrp_composite`` (**ours**): the heatmap of the true class under the model's own LRP composite,
  the one every step of the audit explains with (z+ on the convolutions of the VGG/ResNet
  families), computed by the closed-form fast backend through autograd, with the training batch's
  BatchNorm statistics. With ``positive_share`` the penalty is exactly the evaluation's artifact
  relevance (before the mask's dilation), so the loss lowers the quantity that is reported.

Both LRP explanations need heatmaps that can be trained through: for a family without them (vision
transformers, :func:`utils.lrp.differentiable.unsupported_reason`) the config is refused in one line.

and the penalty:

* ``squared``: ``sum((M * grad)^2)`` per sample (the published loss);
* ``cosine``: cosine similarity between ``|grad|`` (summed over channels) and ``M``: scale-free, so
  ``lamb`` does not have to follow the gradient magnitude;
* ``share`` (**ours**): the share of ``|grad|`` that falls inside ``M``, ``sum(M |grad|) / sum(|grad|)``;
* ``positive_share`` (**ours**): the share of positive relevance (summed over channels) inside
  ``M``: the artifact relevance of ``utils.evaluation.relevance``, for LRP explanations.

Why ``share``: the squared penalty can be met without moving the model's attention. Shrinking the
gradient everywhere (smaller logits, less confident predictions: for two classes
``grad sum_k log p_k = (1 - 2 p_0) grad (f_0 - f_1)`` vanishes at ``p_0 = 1/2``) lowers it as much as
ignoring the artifact does. The share is invariant to both escapes: it only falls when the input
gradient moves off the artifact. Caveat: the input gradient is not a faithful account of what the
model uses, so a low gradient share does not imply a model that ignores the artifact (z+ relevance,
which ignores the cancellation by negative weights that the gradient reflects, can stay on it).

Measured effects of each explanation and penalty on the demo model:
``experiments/mitigation_experiments/README.md``, "Measured notes on RRR's explanations and penalties".

For multi-hot labels both LRP explanations explain the sum of the logits of a sample's positive
labels, or the biased class where it has none (one convention for every step: :mod:`utils.labels`).

Averaging over the samples that have a mask (not over the batch) keeps the penalty's scale
independent of how many artifact samples a batch happens to contain (**ours**).
"""
import torch
import torch.nn.functional as F

from model_training.corrections.base import Correction, register_correction
from models import get_model_spec
from utils.distributed import get_context
from utils.errors import UserError
from utils.evaluation.relevance import relevance_share
from utils.labels import explained_labels, explained_output, log_probabilities
from utils.lrp.attribution import get_attributor
from utils.lrp.differentiable import (DifferentiableLRP, input_bounds,
                                      unsupported_reason as differentiable_lrp_unsupported)
from utils.lrp.fast.backend import FastBackend, batch_norm_statistics
from utils.registry import Registry


def _squared(grad, mask):
    return ((grad * mask) ** 2).flatten(1).sum(1)


def _cosine(grad, mask):
    saliency = grad.abs().sum(1).flatten(1)
    return F.cosine_similarity(saliency, mask.sum(1).flatten(1), dim=1, eps=1e-12)


def _inside(saliency, mask):
    """Share of the non-negative per-pixel ``saliency`` that lies inside ``mask`` (any channel)."""
    saliency = saliency.flatten(1)
    return (saliency * mask.amax(1).flatten(1)).sum(1) / saliency.sum(1).clamp(min=1e-12)


def _share(grad, mask):
    return _inside(grad.abs().sum(1), mask)


def _positive_share(relevance, mask):
    # the evaluation's artifact relevance; a heatmap without positive relevance adds no penalty
    return torch.nan_to_num(relevance_share(relevance, mask.amax(1)), nan=0.0)


PENALTIES = Registry("rrr_penalty", {"squared": _squared, "cosine": _cosine, "share": _share,
                                      "positive_share": _positive_share})


def masked_mean(penalty, has_mask):
    """Mean of per-sample ``penalty`` over the samples with a mask (of the global batch under torchrun)."""
    context = get_context()
    n_masked = context.sum([int(has_mask.sum())])[0]
    if n_masked == 0 or not bool(has_mask.any()):
        return penalty.sum() * 0.0  # keeps the graph; nothing to penalise in this batch
    penalty = penalty[has_mask]
    return context.mean_share(penalty.sum(), n_masked) if context.enabled else penalty.mean()


# --- explanations: rrr_explanation -> (forward of the training step, the explanation) ------------
class _InputGradient:
    """The published explanation: the input gradient of the summed log-probabilities."""

    @staticmethod
    def refusal(config):
        return None  # autograd explains every model

    input_requires_grad = True  # the Trainer puts x into the graph

    def __init__(self, ctx, config):
        """Nothing to set up: autograd explains every model."""

    def forward(self, model, x):
        return model(x)

    def heatmap(self, x, y, logits):
        (grad,) = torch.autograd.grad(log_probabilities(logits, y).sum(), x, create_graph=True)
        return grad


def _lrp_refusal(config):
    """Both LRP explanations need heatmaps that can be trained through, which some families lack."""
    reason = differentiable_lrp_unsupported(get_model_spec(config.model_name))
    if reason is None:
        return None
    return (f"RRR with rrr_explanation '{config.rrr_explanation}' cannot explain {config.model_name} ({reason}); "
            "use rrr_explanation 'gradient', or method RRClarc or PClarc")


class _EpsilonLRP:
    """Differentiable epsilon-LRP sharing the training forward (as ISNet)."""

    refusal = staticmethod(_lrp_refusal)

    def __init__(self, ctx, config):
        split = ctx.splits.train
        low, high = input_bounds(split, split.in_channels)
        self.lrp = DifferentiableLRP(ctx.model, eps=config.epsilon, input_rule=config.input_rule,
                                     low=low[None], high=high[None])
        self.fallback = ctx.biased_class

    def forward(self, model, x):
        return self.lrp.forward(x, training=True)

    def heatmap(self, x, y, logits):
        logits = self.lrp.logits_for(x, logits)
        return self.lrp.relevance(explained_output(logits, y, self.fallback), create_graph=True)["input"]


class _CompositeLRP:
    """The model's own composite (closed form, fast backend), with the training batch's statistics."""

    refusal = staticmethod(_lrp_refusal)

    def __init__(self, ctx, config):
        spec = get_model_spec(config.model_name)
        reason = FastBackend.unsupported_reason(ctx.model, spec)
        if reason is not None:  # a layer the fast backend lacks: the epsilon-LRP may still explain the model
            instead = "'gradient'" if differentiable_lrp_unsupported(spec) else "'lrp' or 'gradient'"
            raise UserError(f"rrr_explanation 'lrp_composite' needs the fast LRP backend, which cannot explain "
                            f"{config.model_name} ({reason}); use rrr_explanation {instead}")
        self.explainer = get_attributor(ctx.model, backend="fast")
        self.statistics = {}
        self.fallback = ctx.biased_class

    def forward(self, model, x):
        with batch_norm_statistics(model) as self.statistics:
            return model(x)

    def heatmap(self, x, y, logits):
        return self.explainer.differentiable_heatmap(x, explained_labels(y, self.fallback), self.statistics)


EXPLANATIONS = Registry("rrr_explanation", {"gradient": _InputGradient, "lrp": _EpsilonLRP,
                                             "lrp_composite": _CompositeLRP})


@register_correction("RRR")
class RRR(Correction):
    strength = "lamb"

    @classmethod
    def refusal(cls, config):
        return EXPLANATIONS[config.rrr_explanation].refusal(config)

    def prepare(self, ctx):
        self.explanation = EXPLANATIONS[self.config.rrr_explanation](ctx, self.config)
        self.input_requires_grad = getattr(self.explanation, "input_requires_grad", False)

    def forward(self, model, x):
        return self.explanation.forward(model, x)

    def extra_loss(self, model, batch, logits):
        """Mean penalty over the samples with a mask; under ``torchrun`` over the masked samples of
        the global batch, whichever ranks hold them (a rank without any contributes zero)."""
        x, y, mask, _, has_mask = batch[:5]
        has_mask = torch.as_tensor(has_mask, dtype=torch.bool, device=logits.device)
        if not bool(has_mask.any()):  # nothing to explain here; the other ranks may still have masks
            return masked_mean(logits.sum(1) * 0.0, has_mask)
        heatmap = self.explanation.heatmap(x, y.to(logits.device), logits)
        penalty = PENALTIES[self.config.rrr_penalty](heatmap, mask.to(heatmap))
        return self.config.lamb * masked_mean(penalty, has_mask)
