"""ISNet family (Bassi et al.; Faster ISNet): minimise LRP relevance on the image background.

``L = (1-P) * CE + P * (A * l_bkg + B * L_fg)`` with, per heatmap R and foreground mask F:

* ``H = |R| / (mean of |R| over the foreground + 1e-10)``;
* ``b = GWRP_d(H at background positions)`` per channel (sorted descending, weights ``d^i``,
  weighted mean; d = 0 is max pooling); ``l_bkg = log(1 + b / E)``;
* ``F_sum = sum(|R| * F)``; ``L_fg = (max(0, C1 - F_sum)^2 + max(0, F_sum - C2)^2) / C1^2`` keeps
  the foreground relevance from collapsing (C1) or exploding (C2).

Variants (which heatmaps are penalised; registry :data:`VARIANTS`):

* ``original``: one heatmap per class logit (cost grows linearly with the number of classes K);
* ``selective``: one heatmap of ``eta = log p_c - log(1 - p_c)`` (c = label, or the lowest logit).
  For multi-hot labels (sigmoid outputs) eta of label c is its logit ``f_c``, and ``label`` explains
  the sum of the logits of the sample's positive labels, or the biased class's where it has none
  (one convention for every step: :mod:`utils.labels`);
* ``stochastic``: one random logit per sample, half of the time the predicted class.

``deep_supervision`` also penalises the background relevance of the model's inspectable layers,
with the foreground mask max-pooled to each layer's resolution. Heatmaps come from the
differentiable epsilon-LRP of :mod:`utils.lrp.differentiable`; a model family it cannot explain
(vision transformers) is refused when the config is validated.
"""
import copy

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from model_training.corrections.base import Correction, register_correction
from model_training.losses import build_loss
from model_training.trainer import training_seed
from models import get_model_spec
from utils.distributed import get_context
from utils.errors import UserError
from utils.labels import explained_output, is_multi_hot
from utils.lrp.differentiable import (DifferentiableLRP, input_bounds,
                                      unsupported_reason as differentiable_lrp_unsupported)


# --- heatmap losses ----------------------------------------------------------------------------
def gwrp(values, valid, d):
    """Global weighted ranked pooling over the last dim: sort descending, weights ``d^i`` over the
    ``valid`` entries only, weighted mean. ``d = 0`` is max pooling."""
    ranked, _ = torch.sort(values.masked_fill(~valid, float("-inf")), dim=-1, descending=True)
    ranked = torch.where(torch.isfinite(ranked), ranked, torch.zeros_like(ranked))  # invalid ones last, as 0
    weights = float(d) ** torch.arange(values.shape[-1], dtype=torch.float64, device=values.device)
    # the weights of the valid ranks sum to cumsum(weights)[n_valid - 1]: one weight vector for all rows
    totals = torch.cat([weights.new_zeros(1), weights.cumsum(0)]).to(values.dtype)
    n_valid = valid.sum(-1, keepdim=True)
    total = totals.expand(*n_valid.shape[:-1], -1).gather(-1, n_valid)[..., 0]
    return (ranked * weights.to(values.dtype)).sum(-1) / total.clamp(min=1e-12)


def background_loss(rel, foreground, d, E):
    """``log(1 + GWRP_d(H_background) / E)`` per sample (mean over channels); rel (N, C, ...)."""
    absolute = rel.abs().flatten(2)  # (N, C, P)
    fg = foreground.flatten(2).expand_as(absolute) > 0.5
    fg_mean = (absolute * fg).sum((1, 2)) / fg.sum((1, 2)).clamp(min=1)
    normalised = absolute / (fg_mean.view(-1, 1, 1) + 1e-10)
    pooled = gwrp(normalised, ~fg, d)  # (N, C); zero where a sample has no background
    return torch.log1p(pooled / E).mean(1)


def foreground_loss(rel, foreground, C1, C2):
    """Keep the total foreground relevance inside [C1, C2]; per sample."""
    f_sum = (rel.abs() * foreground).flatten(1).sum(1)
    return (F.relu(C1 - f_sum) ** 2 + F.relu(f_sum - C2) ** 2) / C1 ** 2


def tune_bounds(totals):
    """C1 = max(mu/5, mu - 3s), C2 = min(25 C1, mu + 3s) from the total |R| per image."""
    totals = np.asarray(totals, dtype=np.float64)
    mu, s = float(totals.mean()), float(totals.std())
    c1 = max(mu / 5, mu - 3 * s)
    return c1, min(25 * c1, mu + 3 * s)


def pool_mask(foreground, shape):
    """Foreground mask at a hidden layer's resolution: a position is foreground if any pixel is."""
    if foreground.shape[2:] == shape:
        return foreground
    pool = F.adaptive_max_pool2d if len(shape) == 2 else F.adaptive_max_pool1d
    return pool(foreground, shape)


# --- which heatmaps: the variants --------------------------------------------------------------
def _original(logits, y, options):
    return [logits[:, k] for k in range(logits.shape[1])]


def _selective(logits, y, options):
    if is_multi_hot(y):
        # a sigmoid's log-odds is the logit itself: eta of the explained labels is their logits' sum
        if options.get("selective_class", "label") == "label":
            return [explained_output(logits, y, options.get("fallback"))]
        return [logits.min(1).values]
    if options.get("selective_class", "label") == "label":
        c = y
    else:
        c = logits.argmin(1)
    others = logits.masked_fill(F.one_hot(c, logits.shape[1]).bool(), float("-inf"))
    # eta = log p_c - log(1 - p_c) = f_c - logsumexp_{k != c} f_k, computed stably
    return [logits.gather(1, c[:, None])[:, 0] - torch.logsumexp(others, 1)]


def _stochastic(logits, y, options):
    k = logits.shape[1]
    generator = options.get("generator")
    # a training batch under torchrun is a rank's slice of the global batch: drawing for the whole
    # batch and keeping this rank's rows gives one process's choices
    total, rows = get_context().batch_span(len(logits)) if options.get("sharded") else (len(logits), slice(None))
    random_class = torch.randint(0, k, (total,), generator=generator)[rows].to(logits.device)
    use_predicted = (torch.rand(total, generator=generator) < 0.5)[rows].to(logits.device)
    chosen = torch.where(use_predicted, logits.argmax(1), random_class)
    return [logits.gather(1, chosen[:, None])[:, 0]]


VARIANTS = {"original": _original, "selective": _selective, "stochastic": _stochastic}


# --- the correction ----------------------------------------------------------------------------
@register_correction("ISNet")
class ISNet(Correction):
    strength = "A"  # the weight of the background-relevance loss
    defaults = {"grad_clip": 1.0}  # recommended by Faster ISNet: LRP losses have spiky gradients
    fallback = None  # multi-label: the class a sample without positive label explains (set by prepare)

    @classmethod
    def label(cls, config):
        return f"ISNet {config.variant}" + (" deep" if config.deep_supervision else "")

    @classmethod
    def starts_from_scratch(cls, config):
        return config.from_scratch

    @classmethod
    def refusal(cls, config):
        from datasets import get_dataset_entry

        if get_dataset_entry(config.dataset_name).modality == "signal":  # known before any data is read
            return (f"{cls.label(config)} needs foreground masks, and signal data ('{config.dataset_name}') has "
                    "none; use method RRR, RRClarc or PClarc")
        reason = differentiable_lrp_unsupported(get_model_spec(config.model_name))
        if reason is None:
            return None
        return (f"{cls.label(config)} cannot explain {config.model_name} ({reason}); use method RRR with "
                "rrr_explanation 'gradient', RRClarc or PClarc")

    def prepare(self, ctx):
        config = self.config
        split = ctx.splits.train
        if split.get_foreground_mask(0) is None:
            raise UserError(f"ISNet needs foreground masks; dataset '{config.dataset_name}' has none")
        channels = split.load_raw(0).shape[0]
        low, high = input_bounds(split, channels)
        layers = get_model_spec(config.model_name).layer_names if config.deep_supervision else ()
        self.fallback = ctx.biased_class
        self.setup(ctx.model, low, high, layers, build_loss(config.loss, split.class_counts(), split.multi_label).to(ctx.device))
        if self.C1 is None or self.C2 is None:
            self.C1, self.C2 = self._tune(ctx, low, high, layers)
        if get_context().is_main:
            print(f"ISNet foreground bounds: C1={self.C1:.4g} C2={self.C2:.4g}")

    def setup(self, model, low, high, layers, criterion):
        """Everything but C1/C2 tuning (used by ``prepare`` and by the scaling benchmark)."""
        self.lrp = self.make_lrp(model, low, high, layers)
        self.criterion = criterion
        self.generator = torch.Generator().manual_seed(training_seed(self.config))
        self.C1, self.C2 = self.config.C1, self.config.C2

    def make_lrp(self, model, low, high, layers=()):
        return DifferentiableLRP(model, eps=self.config.epsilon, input_rule=self.config.input_rule,
                                 low=low[None], high=high[None], layers=layers)

    def heatmaps(self, lrp, x, y, create_graph=True, sharded=False, logits=None):
        """``sharded``: ``x`` is this rank's slice of a global training batch; ``logits``: those of
        ``lrp``'s last forward pass of ``x`` (otherwise one is run)."""
        if logits is None:
            logits = lrp.forward(x)
        options = {"selective_class": self.config.selective_class, "generator": self.generator, "sharded": sharded,
                   "fallback": self.fallback}
        return [lrp.relevance(t, create_graph) for t in VARIANTS[self.config.variant](logits, y, options)]

    def heatmap_loss(self, relevances, foreground):
        config, total = self.config, 0.0
        for rel in relevances:
            loss = (config.A * background_loss(rel["input"], foreground, config.d, config.E)
                    + config.B * foreground_loss(rel["input"], foreground, self.C1, self.C2))
            if rel["layers"]:
                hidden = [background_loss(r, pool_mask(foreground, r.shape[2:]), config.d, config.E)
                          for r in rel["layers"].values()]
                loss = loss + config.A * torch.stack(hidden).mean(0)
            total = total + loss.mean()
        return total / len(relevances)

    def forward(self, model, x):
        # the LRP forward is the training forward: the heatmaps reuse it, and the cross-entropy
        # still back-propagates exact gradients (see utils.lrp.differentiable)
        return self.lrp.forward(x, training=True)

    def extra_loss(self, model, batch, logits):
        x, y, _, foreground = batch[:4]
        foreground = foreground.to(logits.device)
        relevances = self.heatmaps(self.lrp, x.detach(), y, sharded=True, logits=self.lrp.logits_for(x, logits))
        penalty = self.heatmap_loss(relevances, foreground)
        # the Trainer adds CE with weight 1; ISNet weighs it (1 - P)
        return self.config.P * (penalty - self.criterion(logits, y))

    # --- C1/C2 ---------------------------------------------------------------------------------
    def _tune(self, ctx, low, high, layers):
        """C1/C2 from the total |R| of every training image.

        Under torchrun each rank computes a share, except for the stochastic variant: its heatmaps
        draw from ``self.generator``, which every rank must advance as one process does. Rank 0's
        bounds are used by all, so every rank optimises the same loss.
        """
        config, model, context = self.config, ctx.model, get_context()
        if config.from_scratch and config.tune_epochs > 0:
            model = self._plain_copy(ctx)
        lrp = self.make_lrp(model, low, high)
        sharded = context.enabled and config.variant != "stochastic"
        share = torch.utils.data.Subset(ctx.train_set, context.shard(range(len(ctx.train_set)))) if sharded \
            else ctx.train_set
        loader = torch.utils.data.DataLoader(share, batch_size=config.batch_size, num_workers=config.num_workers)
        augment, ctx.train_set.augment = ctx.train_set.augment, False
        totals, was_training = [torch.zeros(0)], model.training
        model.eval()
        try:
            for x, y, *_ in tqdm(loader, desc="tuning C1/C2", leave=False, disable=not context.is_main):
                for rel in self.heatmaps(lrp, x.to(ctx.device), y.to(ctx.device), create_graph=False):
                    totals.append(rel["input"].detach().abs().flatten(1).sum(1).float().cpu())
        finally:
            ctx.train_set.augment = augment
            model.train(was_training)
        all_totals = context.gather_rows(torch.cat(totals)) if sharded else torch.cat(totals)
        return context.broadcast_object(tune_bounds(all_totals.numpy()))

    def _plain_copy(self, ctx):
        """Train a copy of the fresh model plainly for ``tune_epochs``: its heatmaps set C1/C2."""
        from datasets import DataSplits
        from model_training.trainer import Trainer

        plain = copy.deepcopy(ctx.model)
        config = self.config.model_copy(update={"num_epochs": self.config.tune_epochs, "milestones": []})
        out_dir = ctx.extras.get("out_dir")
        trainer = Trainer(config, out_dir / "c_tuning" if out_dir else None, model=plain,
                          splits=DataSplits(ctx.splits.train, ctx.splits.val, ctx.splits.test))
        trainer.fit()
        return plain
