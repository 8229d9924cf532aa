"""Evaluation subsets for an artifact the data set annotates itself, made by pasting real cut-outs.

An inserted artifact (``with_artifacts``) can be drawn into any image; an annotated one (a ruler
photographed with the lesion, listed in ``artifacts.json`` with a mask) exists only where it was
photographed. To still ask "is the shortcut gone?", the artifact is cut out of training images with
its mask and pasted into images that lack it. Modes give the same evaluation subsets as
:class:`~datasets.with_artifacts.ArtifactDataset`:

* ``ch``: the split as it is;
* ``clean``: the samples of the split that do not carry the artifact (a filtered view);
* ``attacked``: every sample of the split with the artifact: those that carry it as they are, a
  cut-out pasted into each of the others.

``attacked`` thus holds the same images as an inserted artifact's ``attacked`` subset (all of the
split), so the two are comparable; paired tests compare two models on the same subset.

Sources are the *training* split's samples annotated with the artifact that have a (non-empty) mask,
or, where the mask file is missing, the mask an optional ``mask_provider(sample_id)`` gives (e.g. the
localization step's). The test split's own artifacts are never pasted, so nothing of it leaks. For
sample ``i`` of a split a generator seeded with (seed, split, i, artifact) draws the source (uniform
over the sources), a horizontal and a vertical flip of the cut-out (each with probability 1/2) and its
position: with probability ``keep_position`` (default 1/2) the cut-out stays where it was in the source
image (real artifacts sit where they sit for a reason: rulers along the border, band-aids beside the
lesion), otherwise its bounding box goes anywhere it fits whole inside the image (uniform), which also
tests whether the shortcut depends on where the artifact is. ``i`` is the index in the whole split, so
a sample gets the same paste whatever the filtering. The cut-out is the source image at the target's
size, restricted to the bounding box of its mask; pasting replaces exactly the pixels under the mask,
which become the artifact's mask in ``attacked`` mode and leave the foreground mask.
"""
import functools
import warnings
import zlib

import numpy as np
import torch
import torch.nn.functional as F

from datasets.base import BaseDataset
from utils.errors import UserError

MODES = ("ch", "clean", "attacked")
KEEP_POSITION = 0.5
CUTOUT_CACHE = 256  # cut-outs kept per artifact (a few MB at 64 px, about 150 MB at 224 px)


def _code(text):
    return zlib.crc32(text.encode())


class PasteSources:
    """The cut-outs of ``artifact`` available for pasting: training samples annotated with it and masked.

    Args:
        train: the training split (as every step sees it, i.e. already wrapped).
        artifact: the annotated artifact.
        mask_provider: optional ``sample_id -> boolean mask or None``, asked where the data set has no
            mask of an annotated sample (e.g. masks from the localization step).
    """

    def __init__(self, train: BaseDataset, artifact, mask_provider=None):
        self.train, self.artifact, self.mask_provider = train, artifact, mask_provider
        self.candidates = np.flatnonzero(np.asarray(train.artifact_labels(artifact), dtype=bool))
        self._indices = None
        self.cutout = functools.lru_cache(maxsize=CUTOUT_CACHE)(self._cutout)

    def __getstate__(self):
        # the memo wraps a bound method, which pickle cannot store (DataLoader workers under spawn)
        return {k: v for k, v in self.__dict__.items() if k != "cutout"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.cutout = functools.lru_cache(maxsize=CUTOUT_CACHE)(self._cutout)

    def mask(self, idx):
        """Mask of training sample ``idx`` (boolean tensor), or ``None`` if neither source has one."""
        mask = self.train.get_mask(int(idx), self.artifact)
        if (mask is None or not bool(torch.as_tensor(mask).any())) and self.mask_provider is not None:
            mask = self.mask_provider(self.train.sample_ids[int(idx)])
        if mask is None:
            return None
        mask = torch.as_tensor(np.asarray(mask)).bool()
        return mask if mask.any() else None

    def available(self):
        """Whether any source has a mask; stops at the first one (cheap on a large data set)."""
        if self._indices is not None:
            return len(self._indices) > 0
        return any(self.mask(i) is not None for i in self.candidates)

    @property
    def indices(self):
        """Training indices of the usable sources (read once: every mask is opened here)."""
        if self._indices is None:
            self._indices = np.array([i for i in self.candidates if self.mask(i) is not None], dtype=np.int64)
        return self._indices

    def __len__(self):
        return len(self.indices)

    def _cutout(self, k, size):
        """Source ``k`` at image size ``size`` (H, W) cut to its mask's bounding box.

        Returns the patch (C, h, w), its mask (h, w) and the box's top-left corner in the source.
        """
        idx = int(self.indices[k])
        image, mask = self.train.load_raw(idx), self.mask(idx)
        if tuple(image.shape[-2:]) != size:  # sources of another size are rescaled to the target's
            image = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)[0]
        if tuple(mask.shape) != size:  # nearest: a mask stays a mask
            mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0] > 0.5
        rows, cols = np.flatnonzero(mask.any(1).numpy()), np.flatnonzero(mask.any(0).numpy())
        if len(rows) == 0:  # the mask vanished when shrunk: paste nothing rather than fail
            return image[:, :0, :0], mask[:0, :0], (0, 0)
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        return image[(slice(None), *box)].clone(), mask[box].clone(), (int(rows[0]), int(cols[0]))


class PastedArtifactDataset(BaseDataset):
    """A split with ``clean``/``attacked`` subsets for an annotated artifact (see the module docstring).

    Args:
        base: the split as it is (the registry's wrapped split; inserted artifacts stay as they are).
        target: the annotated artifact under study.
        sources: the :class:`PasteSources` of ``target`` (shared by all splits of a data set).
        seed: seeds every draw (with split, sample index and artifact).
        mode: ``ch``, ``clean`` or ``attacked``.
        keep_position: probability of keeping the cut-out where it was in its source.
    """

    def __init__(self, base: BaseDataset, target, sources: PasteSources, seed=0, mode="ch",
                 keep_position=KEEP_POSITION):
        if mode == "confounding":  # it would have to take the artifact out of the images that show it
            raise UserError(f"evaluation subset 'confounding' needs an inserted artifact: '{target}' is part of the "
                            f"images, where it cannot be removed; valid here: {', '.join(MODES)}")
        if mode not in MODES:
            raise UserError(f"unknown evaluation subset '{mode}'; valid: {', '.join(MODES)}")
        carries = np.asarray(base.artifact_labels(target), dtype=bool)
        indices = np.flatnonzero(~carries) if mode == "clean" else np.arange(len(base))
        self.carries = carries[indices]  # already carries the target: nothing to paste
        super().__init__(base.split, base.class_names, [base.sample_ids[i] for i in indices],
                         np.asarray(base.labels)[indices], base.mean, base.std, base.augment, base.multi_label)
        self.base, self.target, self.sources, self.seed, self.mode = base, target, sources, seed, mode
        self.keep_position, self.modality = keep_position, base.modality
        self.indices = indices  # position in this view -> index in ``base``

    def with_mode(self, mode):
        """The same split as evaluation subset ``mode`` (``ch``, ``clean`` or ``attacked``)."""
        return PastedArtifactDataset(self.base, self.target, self.sources, self.seed, mode, self.keep_position)

    # --- annotations --------------------------------------------------------------------------
    @property
    def artifact_names(self):
        return self.base.artifact_names

    def artifact_labels(self, artifact):
        if artifact == self.target and self.mode != "ch":
            return np.full(len(self), self.mode == "attacked", dtype=bool)
        return np.asarray(self.base.artifact_labels(artifact), dtype=bool)[self.indices]

    # --- pasting ------------------------------------------------------------------------------
    def placement(self, idx):
        """The draws for sample ``idx`` of this view: source number, flips (h, v), keep, position fractions."""
        rng = np.random.default_rng([self.seed, _code(self.split), int(self.indices[idx]), _code(self.target), 2])
        source = int(rng.integers(len(self.sources)))
        flip_h, flip_v, keep = rng.random(3) < (0.5, 0.5, self.keep_position)
        # fractions of the free range: drawn before the cut-out's size is known, so the stream is fixed
        return source, bool(flip_h), bool(flip_v), bool(keep), rng.random(2)

    def _compose(self, idx):
        """Image (C, H, W) of sample ``idx`` and the mask of the pasted pixels (``None`` unless attacked)."""
        image = self.base.load_raw(int(self.indices[idx]))
        if self.mode != "attacked" or self.carries[idx]:
            return image, None
        source, flip_h, flip_v, keep, fractions = self.placement(idx)
        height, width = image.shape[-2:]
        patch, mask, (top, left) = self.sources.cutout(source, (int(height), int(width)))
        if flip_h:
            patch, mask = patch.flip(-1), mask.flip(-1)
        if flip_v:
            patch, mask = patch.flip(-2), mask.flip(-2)
        h, w = mask.shape
        if not keep:
            top, left = int(fractions[0] * (height - h + 1)), int(fractions[1] * (width - w + 1))
        pasted = torch.zeros(int(height), int(width), dtype=torch.bool)
        pasted[top:top + h, left:left + w] = mask
        image = image.clone()
        region = image[:, top:top + h, left:left + w]  # a view: writing it writes the image
        region[:, mask] = patch[:, mask].to(image.dtype)
        return image, pasted

    def render(self, idx):
        """Sample in the inserters' layout (image (H, W, 3)) and the mask of each pasted artifact."""
        image, pasted = self._compose(idx)
        return image.permute(1, 2, 0).numpy(), ({self.target: pasted.numpy()} if pasted is not None else {})

    def load_raw(self, idx):
        return self._compose(idx)[0]

    def get_mask(self, idx, artifact):
        base_idx = int(self.indices[idx])
        pasted = self._compose(idx)[1] if self.mode == "attacked" else None
        if pasted is None:  # as the base has it (ch, clean, or a sample that carries the artifact itself)
            mask = self.base.get_mask(base_idx, artifact)
            if mask is None and self.mode == "clean" and artifact == self.target:
                mask = torch.zeros(self.base.load_raw(base_idx).shape[-2:], dtype=torch.bool)
            return mask
        if artifact == self.target:
            return pasted
        mask = self.base.get_mask(base_idx, artifact)
        # the pasted artifact covers whatever lay beneath it, as a later inserted artifact does
        return mask & ~pasted if mask is not None else mask

    def get_foreground_mask(self, idx):
        foreground = self.base.get_foreground_mask(int(self.indices[idx]))
        pasted = self._compose(idx)[1] if foreground is not None and self.mode == "attacked" else None
        return foreground if pasted is None else foreground & ~pasted


def with_pasted_subsets(splits, artifact, seed=0, mask_provider=None, keep_position=KEEP_POSITION):
    """Wrap ``splits`` ({split: dataset}) with pasted ``clean``/``attacked`` subsets of ``artifact``.

    Sources come from ``splits["train"]`` only. Without a single masked source the splits are returned
    as they are (no subsets, ``target`` unset) and a one-line warning says why.
    """
    sources = PasteSources(splits["train"], artifact, mask_provider)
    if not sources.available():
        warnings.warn(f"artifact '{artifact}': no training sample annotated with it has a mask, so no clean/attacked "
                      "subsets can be pasted; only the data as it is ('ch') is evaluated", UserWarning, stacklevel=3)
        return splits
    return {name: PastedArtifactDataset(split, artifact, sources, seed, keep_position=keep_position)
            for name, split in splits.items()}
