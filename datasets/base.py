"""What every data set split offers to the rest of the framework.

A split is a ``torch.utils.data.Dataset`` yielding ``(normalised input, label)``, plus the metadata
later steps need: class names, sample ids, labels, normalisation, artifact annotations and masks,
and foreground masks. Subclasses implement :meth:`load_raw` (channels first; images in [0, 1], signals
in physical units such as mV).
"""
import collections
import functools
import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np
import torch


# The generated data sets' render cache, per image size: 2 GiB by default holds every sample of 25,000
# 64-px images (53 KB each with the mask), so no step draws a sample twice even at the size of ISIC 2019;
# memory is only taken as samples are drawn (the demo's 3,600 samples: about 190 MB). The samples with
# their inserted artifacts (datasets.with_artifacts) are kept within a budget of the same size of their own.
# A smaller budget makes every step that reads a split again pay for drawing it when the data set does
# not fit, so the steps would grow faster than their work with the size of the data set.
ENV_RENDER_CACHE = "SHORTCUTLAB_RENDER_CACHE_MIB"
DEFAULT_RENDER_CACHE_MIB = 2048


def flag_option(name, value):
    """A yes/no ``dataset_options`` entry: ``true``/``false`` only (YAML's ``"no"`` as a string would
    otherwise count as yes)."""
    if not isinstance(value, bool):
        from utils.errors import UserError

        raise UserError(f"dataset_options.{name}: true or false, got {value!r}")
    return value


def render_cache_bytes() -> int:
    """The render cache's budget in bytes: ``$SHORTCUTLAB_RENDER_CACHE_MIB`` (0: no cache), else 2 GiB."""
    value = os.environ.get(ENV_RENDER_CACHE, "").strip()
    if not value:
        return DEFAULT_RENDER_CACHE_MIB * 2**20
    if not value.isdigit():
        from utils.errors import UserError

        raise UserError(f"${ENV_RENDER_CACHE}: a whole number of MiB (0: no render cache), got {value!r}")
    return int(value) * 2**20


def shared_render_cache(draw, bytes_per_sample):
    """``draw(*key)`` memoised for the whole process, about :func:`render_cache_bytes` at most.

    For generated data sets: every step of a pipeline opens the data set anew, and drawing the
    samples again would cost more than the step's own model passes.
    """
    budget = render_cache_bytes()
    return functools.lru_cache(maxsize=max(64, budget // bytes_per_sample) if budget else 0)(draw)


class RenderMemo:
    """Rendered samples kept for the whole process under a key that decides their content, within
    :func:`render_cache_bytes` (the least recently used go first). ``draw()`` makes a missing one;
    ``nbytes(value)`` says what it holds. Callers must not change what they get: it is shared."""

    def __init__(self, nbytes):
        self.nbytes, self.items, self.held, self.budget = nbytes, collections.OrderedDict(), 0, None

    def get(self, key, draw):
        if self.budget is None:  # read when first used: a bad value is the step's user error
            self.budget = render_cache_bytes()
        held = self.items.get(key)
        if held is not None:
            self.items.move_to_end(key)
            return held[0]
        value = draw()
        size = self.nbytes(value)
        if size <= self.budget:
            self.items[key] = (value, size)
            self.held += size
            while self.held > self.budget:
                self.held -= self.items.popitem(last=False)[1][1]
        return value


class _ChannelStatistic:
    """A per-channel normalisation statistic (``mean``, ``std``) kept as float32; setting one drops the
    shaped copies :meth:`BaseDataset._per_channel` made of the old values."""

    def __set_name__(self, owner, name):
        self.attribute = f"_{name}"

    def __get__(self, dataset, owner=None):
        return self if dataset is None else getattr(dataset, self.attribute)

    def __set__(self, dataset, value):
        setattr(dataset, self.attribute, torch.as_tensor(value, dtype=torch.float32))
        dataset._shaped_stats = {}


class BaseDataset(torch.utils.data.Dataset):
    modality = "image"  # "image": (C, H, W); "signal": (C, T)

    def __init__(self, split, class_names, sample_ids, labels, mean, std, augment=False,
                 multi_label=False):
        self.split = split
        self.class_names = list(class_names)
        self.sample_ids = list(sample_ids)
        self.labels = np.asarray(labels)
        self.mean, self.std = mean, std
        self.augment = augment
        self.multi_label = multi_label

    # --- to implement -------------------------------------------------------------------------
    def load_raw(self, idx) -> torch.Tensor:
        """Input of sample ``idx`` (images in [0, 1]; signals in mV) before augmentation and normalisation."""
        raise NotImplementedError

    def get_foreground_mask(self, idx):
        """Boolean mask of the object of interest (e.g. the lesion), or ``None`` if unknown."""
        return None

    def render_key(self, idx):
        """A hashable key that alone decides what :meth:`load_raw` gives for ``idx`` in this process
        (generated data: its settings and the index), or ``None`` (read from files). Wrappers that
        render on top of a sample, such as inserted artifacts, keep their results under it."""
        return None

    # --- artifacts: data sets without annotations have none -------------------------------------
    @property
    def artifact_names(self):
        return []

    def artifact_labels(self, artifact) -> np.ndarray:
        """Boolean array: which samples contain ``artifact``."""
        return np.zeros(len(self), dtype=bool)

    def get_mask(self, idx, artifact):
        """Boolean mask of the pixels (or time steps) of ``artifact`` in sample ``idx``, or None."""
        return None

    def identity(self):
        """What identifies the content of this split beyond the config's settings (JSON-able), or
        ``None`` when the settings alone decide it (generated data). Caches compare it to notice
        that files on disk changed; wrappers return their base's."""
        base = getattr(self, "base", None)
        return base.identity() if isinstance(base, BaseDataset) else None

    # --- shared behaviour ---------------------------------------------------------------------
    @property
    def n_classes(self):
        return len(self.class_names)

    @property
    def in_channels(self):
        """Channels of a sample (colour channels of an image, leads of a signal): what a model's first layer
        takes."""
        return int(self.load_raw(0).shape[0])

    def __len__(self):
        return len(self.sample_ids)

    def label(self, idx):
        label = self.labels[idx]
        if self.multi_label:
            return torch.as_tensor(label, dtype=torch.float32)
        return int(label)

    def __getitem__(self, idx):
        x = self.load_raw(idx)
        if self.augment:
            (x,) = self.random_flips([x])
        return self.normalize(x), self.label(idx)

    def random_flips(self, tensors):
        """Apply the same random flips to an input and its masks (training augmentation)."""
        out = list(tensors)
        if self.modality == "signal":
            return out
        # one draw per axis, the last axis first, whatever the outcome: the global RNG stream (and so
        # every later draw of a run) does not depend on how the flips are carried out
        dims = [dim for dim in (-1, -2) if torch.rand(()).item() < 0.5]
        if dims:  # both axes at once: one copy of each tensor instead of two
            out = [t.flip(dims) if t is not None else None for t in out]
        return out

    mean = _ChannelStatistic()
    std = _ChannelStatistic()

    def normalize(self, x):
        """Normalise one sample (C, ...) or a batch (N, C, ...)."""
        mean, std = self._per_channel(x)
        # a contiguous operand: the image samples are channels-last views of their (H, W, C) renders, on
        # which the broadcast over the channels runs a few elements at a time, slower than a copy first
        return (x.contiguous() - mean) / std

    def denormalize(self, x):
        mean, std = self._per_channel(x)
        return x * std + mean

    def _per_channel(self, x):
        """Mean and std in ``x``'s dtype and device, shaped to broadcast over one sample or a batch.

        Made once per kind of input: every sample of every epoch is normalised, and converting and
        reshaping the statistics each time cost more than the arithmetic."""
        key = (x.dtype, x.device, x.dim(), self.modality)
        stats = self._shaped_stats.get(key)
        if stats is None:
            sample_dims = 2 if self.modality == "signal" else 3
            leading = x.dim() - sample_dims  # 0 for one sample, 1 for a batch
            shape = (*([1] * leading), -1, *([1] * (sample_dims - 1)))
            stats = self._shaped_stats[key] = (self.mean.to(x).view(shape), self.std.to(x).view(shape))
        return stats

    def class_counts(self):
        if self.multi_label:
            return self.labels.sum(0)
        return np.bincount(self.labels, minlength=self.n_classes)


@dataclass
class DataSplits:
    train: BaseDataset
    val: BaseDataset
    test: BaseDataset

    @property
    def class_names(self):
        return self.train.class_names

    @property
    def n_classes(self):
        return self.train.n_classes

    @property
    def in_channels(self):
        return self.train.in_channels

    def get(self, split) -> BaseDataset:
        return {"train": self.train, "val": self.val, "test": self.test}[split]

    def items(self):
        return [("train", self.train), ("val", self.val), ("test", self.test)]

    def identity(self):
        """A digest of the splits' :meth:`BaseDataset.identity`, or ``None`` for generated data."""
        parts = {name: split.identity() for name, split in self.items()}
        if all(part is None for part in parts.values()):
            return None
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
