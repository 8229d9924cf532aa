"""RR-ClArC (Right-Reason ClArC, Dreyer et al. 2024): make the model insensitive along the CAV.

``g = d(sum_k s_k f_k) / d a_l(x)``; ``L = CE + lamb * mean((<mean_spatial(g), v>)^2)``, the mean over
space or tokens, whichever the layer's channel axis leaves (:mod:`utils.layout`).

``criterion`` chooses the differentiated output: ``all_logits_random`` (random signs s_k, so no
class is favoured and the penalty covers every output direction), ``logprobs`` (sum of
log-probabilities) or ``target`` (the true class's logit). For multi-hot labels the log-probabilities
are the labels' sigmoids and ``target`` is the sum of the logits of a sample's positive labels, or the
biased class's where it has none (:mod:`utils.labels`). The CAV ``v`` is fitted on the original
model's pooled activations of the training set before fine-tuning.
"""
import numpy as np
import torch

from model_training.corrections.base import Correction, register_correction
from model_training.corrections.cavs import fit_artifact_cav
from model_training.corrections.layers import ActivationCatcher, get_layer
from model_training.trainer import training_seed
from utils.distributed import get_context
from utils.labels import explained_labels, explained_output, log_probabilities
from utils.layout import pool
from utils.registry import Registry


def _all_logits_random(logits, y, generator=None):
    # signs drawn for the global batch, this rank's rows kept: torchrun gives one process's signs
    total, rows = get_context().batch_span(len(logits))
    signs = torch.randint(0, 2, (total, *logits.shape[1:]), generator=generator)[rows].to(logits) * 2 - 1
    return (logits * signs).sum()


def _logprobs(logits, y, generator=None):
    return log_probabilities(logits, y).sum()


def _target(logits, y, generator=None):
    # y: explained_labels (a multi-hot row without positives already holds the biased class)
    return explained_output(logits, y).sum()


CRITERIA = Registry("criterion", {"all_logits_random": _all_logits_random, "logprobs": _logprobs, "target": _target})


def rrclarc_penalty(activation, logits, y, direction, criterion="all_logits_random", generator=None, axis=1):
    """``mean((<mean_spatial(d out / d a), v>)^2)`` over the batch; ``activation`` in the graph of ``logits``,
    its channels on ``axis``.

    ``generator`` draws the random signs: the method's own, so that its draws do not shift the
    global stream that data augmentation uses (lambda 0 must be Vanilla fine-tuning)."""
    out = CRITERIA[criterion](logits, y, generator)
    (grad,) = torch.autograd.grad(out, activation, create_graph=True)
    grad = pool(grad, "cavs_mean", axis)
    return ((grad @ direction.to(grad)) ** 2).mean()


@register_correction("RRClarc")
class RRClarc(Correction):
    strength = "lamb"

    def prepare(self, ctx):
        self.cav = fit_artifact_cav(ctx, self.config.cav_type)
        self.direction = torch.as_tensor(np.asarray(self.cav.direction), dtype=torch.float32, device=ctx.device)
        self.catcher = ActivationCatcher(get_layer(ctx.model, ctx.layer_name), ensure_grad=True)
        self._handles.append(self.catcher)
        self.generator = torch.Generator().manual_seed(training_seed(self.config))
        self.axis = ctx.channel_axis
        self.fallback = ctx.biased_class

    def extra_loss(self, model, batch, logits):
        y = explained_labels(batch[1], self.fallback)
        return self.config.lamb * rrclarc_penalty(self.catcher.output, logits, y, self.direction,
                                                  self.config.criterion, self.generator, self.axis)

    def state(self):
        return {"cav": torch.as_tensor(np.asarray(self.cav.direction), dtype=torch.float32)}
