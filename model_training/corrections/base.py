"""What every correction method implements, and the registry that names them.

A method is a class registered with ``@register_correction("Name")``. Its life cycle:

0. when the config is validated: ``defaults`` fill the config keys the user left unset (e.g. ISNet's
   gradient clipping), and ``refusal(config)`` says in one line why a method cannot handle the model
   family (e.g. heatmap losses on a model without differentiable LRP); ``starts_from_scratch(config)``
   says whether it trains a fresh model instead of correcting a checkpoint;
1. ``prepare(ctx)`` once, with the model to correct and the data (fit CAVs, register hooks, ...);
2. if ``trains``: the shared :class:`~model_training.trainer.Trainer` fine-tunes the model; on every
   batch it gets the logits from ``forward(model, x)`` and calls ``extra_loss(model, batch, logits)``
   (``batch`` = x, y, artifact mask, foreground mask, has-mask flag; x is the tensor the logits were
   computed from, in the graph when ``input_requires_grad``);
3. ``finish(model)`` removes training-only hooks;
4. ``state()`` (tensors and plain values) is stored in the corrected checkpoint, and
   ``attach(model, state, layer_name)`` rebuilds whatever the corrected model needs beyond its
   weights (e.g. the P-ClArC projection hook) when the checkpoint is loaded.

Adding a method = one new module in this package with one registered class.
"""
from dataclasses import dataclass, field

import torch

from utils.labels import biased_class_index, is_multi_hot
from utils.registry import Registry

CORRECTIONS = Registry("correction method")


def register_correction(name):
    """Decorator: register a :class:`Correction` subclass under the config's ``method`` name."""

    def decorate(cls):
        cls.name = name
        return CORRECTIONS.register(name)(cls)

    return decorate


def list_corrections():
    return CORRECTIONS.names()


def get_correction_method(name):
    """The registered correction class ``name``."""
    return CORRECTIONS.get(name)


@dataclass
class CorrectionContext:
    """Everything ``prepare`` may use. ``artifact_train`` marks training samples with the artifact
    (ground truth or localization, per ``source_masks``); ``channel_axis`` is where the channels of
    ``layer_name``'s output are (``utils.layout``), so CAVs, projections and penalties use the
    channels preprocessing stored."""

    config: object
    model: torch.nn.Module
    splits: object
    train_set: object  # MaskedTrainingSet over the training split
    layer_name: str
    device: torch.device
    artifact_train: object = None  # bool np.ndarray (N_train,)
    channel_axis: int = 1
    extras: dict = field(default_factory=dict)

    @property
    def biased_class(self):
        """The class ``artifact_train`` is evidence for (:func:`utils.labels.biased_class_index`): what a
        multi-label sample without a positive label is explained by. ``None`` for single-label data,
        where every sample has its class, or without known artifact samples."""
        labels = self.splits.train.labels
        if not is_multi_hot(labels) or self.artifact_train is None:
            return None
        return biased_class_index(labels, self.artifact_train, self.splits.n_classes)


class Correction:
    """Base class: a no-op correction (plain fine-tuning)."""

    name = "base"
    strength = None  # the config key that sets how strongly the method corrects (what ``sweep`` varies)
    trains = True  # False: training-free (the model is saved right after prepare)
    defaults = {}  # config key -> the method's value when the config leaves it unset (None)
    input_requires_grad = False  # the loss differentiates w.r.t. the input: the Trainer puts x into the graph

    def __init__(self, config):
        self.config = config
        self._handles = []

    @classmethod
    def label(cls, config):
        """Name of the method in result tables (variants that behave differently get their own)."""
        return cls.name

    @classmethod
    def refusal(cls, config):
        """One line on why this method cannot correct ``config.model_name`` as configured, naming what
        works instead; ``None`` if it can. Checked when the config is validated, before any work."""
        return None

    @classmethod
    def starts_from_scratch(cls, config):
        """Whether the method trains a freshly initialised model instead of correcting ``ckpt_path``."""
        return False

    def prepare(self, ctx: CorrectionContext):
        """Set the method up before training (default: nothing)."""

    def forward(self, model, x):
        """The training forward pass (a method whose loss needs a special pass can reuse it)."""
        return model(x)

    def extra_loss(self, model, batch, logits):
        """Loss added to the cross-entropy of the batch; ``None`` adds nothing."""
        return None

    def finish(self, model):
        """Remove training-time hooks; the model is then saved."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def generators(self) -> list:
        """The method's own random generators (every ``torch.Generator`` it holds): the Trainer keeps
        their states in its checkpoints, so a resumed fine-tuning continues their draws exactly."""
        return [value for value in vars(self).values() if isinstance(value, torch.Generator)]

    def state(self) -> dict:
        """What the corrected checkpoint must store besides the weights."""
        return {}

    @classmethod
    def attach(cls, model, state, layer_name):
        """Rebuild the corrected model from its weights and ``state`` (default: weights suffice)."""
        return model
