"""ISNet family (Bassi et al.; Faster ISNet): minimise LRP relevance on the image background.

``L = (1-P) * CE + P * (A * l_bkg + B * L_fg)`` with, per heatmap R and foreground mask F:

* ``H = |R| / (mean of |R| over the foreground + 1e-10)``;
* ``b = GWRP_d(H at background positions)`` per channel (sorted descending, weights ``d^i``,
  weighted mean; d = 0 is max pooling); ``l_bkg = log(1 + b / E)``;
* ``F_sum = sum(|R| * F)``; ``L_fg = (max(0, C1 - F_sum)^2 + max(0, F_sum - C2)^2) / C1^2`` keeps
  the foreground relevance from collapsing (C1) or exploding (C2).

Variants (which outputs are explained; registry :data:`VARIANTS`):

* ``original``: one heatmap per class logit (cost grows linearly with the number of classes K);
* ``selective``: one heatmap of ``eta = log p_c - log(1 - p_c)`` (c = label, or the lowest logit).
  For multi-hot labels (sigmoid outputs) eta of label c is its logit ``f_c``, and ``label`` explains
  the sum of the logits of the sample's positive labels, or the biased class's where it has none
  (one convention for every step: :mod:`utils.labels`);
* ``stochastic``: one random logit per sample, half of the time the predicted class.

Heatmaps of those outputs (``heatmap``, orthogonal to the variant; registry :data:`HEATMAPS`):

* ``lrp``: the differentiable epsilon-LRP of :mod:`utils.lrp.differentiable` (``epsilon``,
  ``input_rule``); a model family it cannot explain (vision transformers) is refused when the
  config is validated;
* ``dual`` (the ISNet paper's Dual ISNet): that heatmap and the model's own LRP composite (z+ on
  the convolutions: what the audit and the artifact-relevance evaluation compute), each with its
  own foreground bounds (``C1``/``C2`` and ``C1_zplus``/``C2_zplus``, tuned separately: the two
  rules' totals differ in scale); the loss is the mean of the two heatmaps' losses;
* ``grad_x_input``: gradient x input, the paper's ablation (the same loss without LRP); plain
  autograd, so it explains every model, vision transformers included.

The variant is one key and the heatmap another, rather than ``variant: dual``, because the two
choices are independent: any variant's outputs can be explained by either heatmap or both, and a
dual ``selective`` keeps Faster ISNet's cost, two heatmaps per sample whatever K.

``deep_supervision`` also penalises the background relevance of the model's inspectable layers,
with the foreground mask max-pooled to each layer's resolution (``grad_x_input``: gradient x
activation there; not with ``dual``, whose z+ heatmap gives no hidden-layer relevance, and not for
models whose layers are tokens).
"""
import copy

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from model_training.corrections.base import Correction, register_correction
from model_training.corrections.shared import computed_once
from model_training.losses import build_loss
from model_training.trainer import training_seed
from models import get_model_spec
from utils.distributed import get_context
from utils.errors import UserError
from utils.labels import explained_output, is_multi_hot
from utils.layout import channel_axis
from utils.lrp.differentiable import (DifferentiableLRP, input_bounds,
                                      unsupported_reason as differentiable_lrp_unsupported)
from utils.lrp.fast.backend import FastBackend, batch_norm_statistics
from utils.registry import Registry


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


# --- which outputs are explained: the variants ------------------------------------------------
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


VARIANTS = Registry("variant", {"original": _original, "selective": _selective, "stochastic": _stochastic})


# --- which heatmaps of them: config key heatmap -----------------------------------------------
# Each kind of heatmap: a training forward (``forward``; ``logits_for`` reuses it), then
# ``relevances(targets)`` = {heatmap name: [{"input": R, "layers": {name: R_l}} per explained output]}.
class _EpsilonLRP:
    """ISNet's heatmap: the differentiable epsilon-LRP (``epsilon``, ``input_rule``)."""

    names = ("lrp",)

    def __init__(self, model, config, low, high, layers=()):
        self.lrp = DifferentiableLRP(model, eps=config.epsilon, input_rule=config.input_rule,
                                     low=low[None], high=high[None], layers=layers)

    def forward(self, x, training=False):
        return self.lrp.forward(x, training=training)

    def logits_for(self, x, logits):
        return self.lrp.logits_for(x, logits)

    def relevances(self, targets, create_graph=True):
        return {"lrp": [self.lrp.relevance(target, create_graph) for target in targets]}


class _Dual(_EpsilonLRP):
    """The Dual ISNet: the epsilon-LRP and the model's own LRP composite (z+ on the convolutions,
    epsilon on dense layers, BatchNorm merged), the latter from the fast backend's closed form through
    autograd, normalised with the statistics of the same forward pass (the training batch's in
    training mode), so both heatmaps explain the network the cross-entropy trains (without dropout,
    as the evaluation's heatmaps). It costs one more forward pass and backward walk per explained
    output.

    The composite explains a function ``t`` of the logits ``f`` from ``R_k = (dt/df_k) f_k``: a logit's
    (or a sum of logits') own heatmap, and for ``selective``'s log-odds of one class the logits weighed
    as the log-odds' gradient weighs them (LRP is linear in the relevance it starts from)."""

    names = ("lrp", "zplus")

    def __init__(self, model, config, low, high, layers=()):
        super().__init__(model, config, low, high, layers)
        spec = get_model_spec(config.model_name)
        reason = FastBackend.unsupported_reason(model, spec)
        if reason is not None:
            raise UserError(f"ISNet heatmap 'dual' takes its z+ heatmap from the fast LRP backend, which cannot "
                            f"explain {config.model_name} ({reason}); use heatmap 'lrp'")
        self.model, self.composite, self.statistics = model, FastBackend(model, spec), {}

    def forward(self, x, training=False):
        # what each BatchNorm normalised this batch with, for the composite's own pass over it
        with batch_norm_statistics(self.model) as self.statistics:
            return super().forward(x, training)

    def logits_for(self, x, logits):
        return logits if logits is self.lrp.logits else self.forward(x.detach())

    def relevances(self, targets, create_graph=True):
        composite = [{"input": self._composite(target, create_graph), "layers": {}} for target in targets]
        return {**super().relevances(targets, create_graph), "zplus": composite}

    def _composite(self, target, create_graph):
        (weights,) = torch.autograd.grad(target.sum(), self.lrp.logits, create_graph=create_graph, retain_graph=True)
        heatmap = self.composite.differentiable_heatmap(self.lrp.x.detach(), None, self.statistics,
                                                        init_rel=lambda logits: weights * logits)
        return heatmap if create_graph else heatmap.detach()


class _GradientTimesInput:
    """Gradient x input (the ablation: ISNet's loss without LRP), by autograd through the model's own
    forward; needs no ReLU network, so it explains every model. Hidden layers (deep supervision):
    gradient x activation. Under training-mode BatchNorm the gradient includes the batch statistics'
    dependence on each sample, as RRR's input gradient does (LRP holds them constant per sample).
    The forward is the model's own: a second pass over a batch in training mode would update the
    running statistics again, which the training step (one forward, ``logits_for``) never makes."""

    names = ("grad_x_input",)

    def __init__(self, model, config, low, high, layers=()):
        modules = dict(model.named_modules())
        missing = [name for name in layers if name not in modules]
        if missing:
            raise UserError(f"ISNet deep_supervision: model has no layer {', '.join(missing)}")
        self.model, self.layers, self._modules = model, tuple(layers), modules
        self.logits = None

    def forward(self, x, training=False):
        self.x = x if x.requires_grad else x.detach().requires_grad_(True)
        self.acts = {}
        handles = [self._modules[name].register_forward_hook(lambda m, i, o, name=name: self.acts.__setitem__(name, o))
                   for name in self.layers]
        try:
            self.logits = self.model(self.x)
        finally:
            for handle in handles:
                handle.remove()
        return self.logits

    def logits_for(self, x, logits):
        return logits if logits is self.logits else self.forward(x.detach())

    def relevances(self, targets, create_graph=True):
        return {"grad_x_input": [self._relevance(target, create_graph) for target in targets]}

    def _relevance(self, target, create_graph):
        inputs = [self.x] + [self.acts[name] for name in self.layers]
        grads = torch.autograd.grad(target.sum(), inputs, create_graph=create_graph, retain_graph=True)
        layers = {name: act * grad for name, act, grad in zip(self.layers, inputs[1:], grads[1:])}
        return {"input": self.x * grads[0], "layers": layers}


HEATMAPS = Registry("heatmap", {"lrp": _EpsilonLRP, "dual": _Dual, "grad_x_input": _GradientTimesInput})
# the config keys of each heatmap's foreground bounds (C1, C2)
BOUND_KEYS = {"lrp": ("C1", "C2"), "grad_x_input": ("C1", "C2"), "zplus": ("C1_zplus", "C2_zplus")}


# --- the correction ----------------------------------------------------------------------------
@register_correction("ISNet")
class ISNet(Correction):
    strength = "A"  # the weight of the background-relevance loss
    defaults = {"grad_clip": 1.0}  # recommended by Faster ISNet: LRP losses have spiky gradients
    fallback = None  # multi-label: the class a sample without positive label explains (set by prepare)

    @classmethod
    def label(cls, config):
        name = f"ISNet {config.variant}" + (" dual" if config.heatmap == "dual" else "")
        name += " deep" if config.deep_supervision else ""
        return name + (" (grad×input)" if config.heatmap == "grad_x_input" else "")

    @classmethod
    def starts_from_scratch(cls, config):
        return config.from_scratch

    @classmethod
    def refusal(cls, config):
        from datasets import get_dataset_entry

        if get_dataset_entry(config.dataset_name).modality == "signal":  # known before any data is read
            return (f"{cls.label(config)} needs foreground masks, and signal data ('{config.dataset_name}') has "
                    "none; use method RRR, RRClarc or PClarc")
        spec = get_model_spec(config.model_name)
        if config.deep_supervision and config.heatmap == "dual":
            return (f"{cls.label(config)}: deep_supervision is not available with heatmap 'dual' (its z+ heatmap "
                    "has no hidden-layer relevance); set heatmap 'lrp' or deep_supervision false")
        if config.heatmap == "grad_x_input":  # autograd explains every model
            if config.deep_supervision and channel_axis(spec) != 1:
                return (f"{cls.label(config)} cannot supervise the hidden layers of {config.model_name}: they are "
                        "tokens, which foreground masks cannot be pooled onto; set deep_supervision false")
            return None
        reason = differentiable_lrp_unsupported(spec)
        if reason is None:
            return None
        return (f"{cls.label(config)} cannot explain {config.model_name} ({reason}); use ISNet with heatmap "
                "'grad_x_input', method RRR with rrr_explanation 'gradient', RRClarc or PClarc")

    def prepare(self, ctx):
        config = self.config
        split = ctx.splits.train
        if split.get_foreground_mask(0) is None:
            raise UserError(f"ISNet needs foreground masks; dataset '{config.dataset_name}' has none")
        low, high = input_bounds(split, split.in_channels)
        layers = get_model_spec(config.model_name).layer_names if config.deep_supervision else ()
        self.fallback = ctx.biased_class
        self.setup(ctx.model, low, high, layers, build_loss(config.loss, split.class_counts(), split.multi_label).to(ctx.device))
        untuned = [name for name, bounds in self.bounds.items() if None in bounds]
        if untuned:
            # the runs of a sweep tune on the same model and data: once per process (the strength is not read;
            # the stochastic variant's draws while tuning are replayed through the generator's state)
            settings = {"names": untuned, "fallback": self.fallback,
                        "config": {k: v for k, v in config.model_dump(mode="json").items()
                                   if k not in ("config_name", "num_epochs", self.strength)}}
            tuned, drawn = computed_once("ISNet C1/C2", ctx, settings,
                                         lambda: (self._tune(ctx, low, high, untuned), self.generator.get_state()))
            self.generator.set_state(drawn)
            for name in untuned:  # a bound the config gives is kept
                if not tuned[name][0] > 0:  # C1 divides the foreground loss
                    keys = " and ".join(BOUND_KEYS[name])
                    raise UserError(f"ISNet: the {name} heatmaps of the training images are all zero (an output layer "
                                    f"initialised to zero?), so {keys} cannot be tuned; set {keys}")
                self.bounds[name] = tuple(t if b is None else b for b, t in zip(self.bounds[name], tuned[name]))
        if get_context().is_main:
            print("ISNet foreground bounds: " + ", ".join(f"{name} C1={c1:.4g} C2={c2:.4g}"
                                                          for name, (c1, c2) in self.bounds.items()))

    def setup(self, model, low, high, layers, criterion):
        """Everything but C1/C2 tuning (used by ``prepare`` and by the scaling benchmark)."""
        self.explainer = self.make_explainer(model, low, high, layers)
        self.criterion = criterion
        self.generator = torch.Generator().manual_seed(training_seed(self.config))
        # per heatmap: (C1, C2) from the config, None where it is to be tuned
        self.bounds = {name: tuple(getattr(self.config, key) for key in BOUND_KEYS[name])
                       for name in self.explainer.names}

    def make_explainer(self, model, low, high, layers=()):
        return HEATMAPS[self.config.heatmap](model, self.config, low, high, layers)

    def heatmaps(self, explainer, x, y, create_graph=True, sharded=False, logits=None):
        """``{heatmap name: [relevances of each explained output]}``. ``sharded``: ``x`` is this rank's
        slice of a global training batch; ``logits``: those of ``explainer``'s last forward pass of ``x``
        (otherwise one is run). Every heatmap explains the same outputs (one draw of ``stochastic``)."""
        if logits is None:
            logits = explainer.forward(x)
        options = {"selective_class": self.config.selective_class, "generator": self.generator, "sharded": sharded,
                   "fallback": self.fallback}
        return explainer.relevances(VARIANTS[self.config.variant](logits, y, options), create_graph)

    def heatmap_loss(self, relevances, foreground):
        """The mean over the heatmaps (``dual``: epsilon-LRP and z+) of each one's loss with its own
        bounds. The mean, as the published Dual ISNet averages its loss over every heatmap it
        penalises, both rules' alike: A, B and P then weigh the same as with one heatmap."""
        losses = [self._loss(found, foreground, *self.bounds[name]) for name, found in relevances.items()]
        return torch.stack(losses).mean()

    def _loss(self, relevances, foreground, C1, C2):
        """The loss of one kind of heatmap: mean over the explained outputs and the samples."""
        config, total = self.config, 0.0
        for rel in relevances:
            loss = (config.A * background_loss(rel["input"], foreground, config.d, config.E)
                    + config.B * foreground_loss(rel["input"], foreground, C1, C2))
            if rel["layers"]:
                hidden = [background_loss(r, pool_mask(foreground, r.shape[2:]), config.d, config.E)
                          for r in rel["layers"].values()]
                loss = loss + config.A * torch.stack(hidden).mean(0)
            total = total + loss.mean()
        return total / len(relevances)

    def forward(self, model, x):
        # the heatmaps' forward is the training forward: they reuse it, and the cross-entropy still
        # back-propagates exact gradients (see utils.lrp.differentiable)
        return self.explainer.forward(x, training=True)

    def extra_loss(self, model, batch, logits):
        x, y, _, foreground = batch[:4]
        foreground = foreground.to(logits.device)
        relevances = self.heatmaps(self.explainer, x.detach(), y, sharded=True,
                                   logits=self.explainer.logits_for(x, logits))
        penalty = self.heatmap_loss(relevances, foreground)
        # the Trainer adds CE with weight 1; ISNet weighs it (1 - P)
        return self.config.P * (penalty - self.criterion(logits, y))

    # --- C1/C2 ---------------------------------------------------------------------------------
    def _tune(self, ctx, low, high, names):
        """``{heatmap name: (C1, C2)}`` for ``names``, each from the total |R| of its heatmaps of every
        training image (``dual``: the two rules' totals differ in scale, so each gets its own).

        Under torchrun each rank computes a share, except for the stochastic variant: its heatmaps
        draw from ``self.generator``, which every rank must advance as one process does. Rank 0's
        bounds are used by all, so every rank optimises the same loss.
        """
        config, model, context = self.config, ctx.model, get_context()
        if config.from_scratch and config.tune_epochs > 0:
            model = self._plain_copy(ctx)
        explainer = self.make_explainer(model, low, high)
        sharded = context.enabled and config.variant != "stochastic"
        share = torch.utils.data.Subset(ctx.train_set, context.shard(range(len(ctx.train_set)))) if sharded \
            else ctx.train_set
        loader = torch.utils.data.DataLoader(share, batch_size=config.batch_size, num_workers=config.num_workers)
        augment, ctx.train_set.augment = ctx.train_set.augment, False
        totals, was_training = {name: [torch.zeros(0)] for name in names}, model.training
        model.eval()
        try:
            for x, y, *_ in tqdm(loader, desc="tuning C1/C2", leave=False, disable=not context.is_main):
                found = self.heatmaps(explainer, x.to(ctx.device), y.to(ctx.device), create_graph=False)
                for name in names:
                    totals[name].extend(rel["input"].detach().abs().flatten(1).sum(1).float().cpu()
                                        for rel in found[name])
        finally:
            ctx.train_set.augment = augment
            model.train(was_training)
        bounds = {}
        for name in names:  # the same order on every rank: gather_rows is collective
            found = torch.cat(totals[name])
            bounds[name] = tune_bounds((context.gather_rows(found) if sharded else found).numpy())
        return context.broadcast_object(bounds)

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
