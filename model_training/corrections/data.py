"""The training set of the mitigation step: inputs with their artifact and foreground masks.

``MaskedTrainingSet`` wraps a split without changing its semantics for anyone else and yields
``(x, y, artifact_mask, foreground_mask, has_mask)``, flipped together during augmentation so the
masks stay aligned with the image. Masks come either from the data set's ground truth or from
the localization step's PNG masks (``source_masks``).
"""
import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from utils.errors import UserError
from utils.io import read_json


class MaskedTrainingSet(torch.utils.data.Dataset):
    """A split that also returns masks. Attributes not defined here are the split's own."""

    def __init__(self, split, artifact, localized=None):
        """``localized``: sample id -> bool mask (from the localization step), or None for ground truth."""
        self.split, self.artifact, self.localized = split, artifact, localized
        self.augment = split.augment
        self._cache = {}  # masks never change between epochs; rendering them is the costly part
        if localized is None:
            self.has_mask = np.asarray(split.artifact_labels(artifact), dtype=bool)
        else:
            self.has_mask = np.array([sid in localized for sid in split.sample_ids], dtype=bool)
        if not self.has_mask.any():
            where = "in the localization output" if localized is not None else "in the ground truth"
            raise UserError(f"no training sample of '{artifact}' has a mask {where}; cannot correct with masks")

    def __getattr__(self, name):
        # delegate everything else (class_names, labels, load_raw, class_counts, ...) to the split
        if name == "split":
            raise AttributeError(name)
        return getattr(self.split, name)

    def __len__(self):
        return len(self.split)

    def _layout(self, x):
        # masks cover the input's positions: (H, W) for images (shared by the colour channels),
        # (leads, T) for signals, where an artifact may sit in one lead only (defective_lead)
        return tuple(x.shape) if self.split.modality == "signal" else tuple(x.shape[1:])

    def _masks(self, idx):
        """The boolean artifact and foreground masks of ``idx``, with a channel axis that broadcasts over
        an image's colours (signals: (leads, T) as they are)."""
        masks = self._cache.get(idx)
        if masks is None:
            layout = self._layout(self.split.load_raw(idx))
            artifact = torch.zeros(layout, dtype=torch.bool)
            if self.has_mask[idx]:
                artifact = _fit(self._artifact_mask(idx), layout)
            foreground = self.split.get_foreground_mask(idx)
            foreground = torch.ones(layout, dtype=torch.bool) if foreground is None else _fit(foreground, layout)
            if self.split.modality != "signal":
                artifact, foreground = artifact[None], foreground[None]
            masks = self._cache[idx] = (artifact, foreground)
        return masks

    def _artifact_mask(self, idx):
        if self.localized is None:
            return self.split.get_mask(idx, self.artifact)
        return self.localized[self.split.sample_ids[idx]]

    def __getitem__(self, idx):
        x = self.split.load_raw(idx)
        artifact, foreground = self._masks(idx)
        if self.augment:
            x, artifact, foreground = self.split.random_flips([x, artifact, foreground])
        # flipped while boolean (a quarter of the bytes to copy), made float last: a new tensor each
        # time, so no caller can write into the cache (kept boolean: a quarter of the memory of floats)
        artifact, foreground = artifact.float(), foreground.float()
        return self.split.normalize(x), self.split.label(idx), artifact, foreground, bool(self.has_mask[idx])


def _fit(mask, layout):
    """``mask`` in the two-dimensional ``layout`` of the masks: a time mask (T,) repeated over the
    leads; a mask stored at another resolution (localization PNGs) resized."""
    mask = torch.as_tensor(mask).bool()
    if mask.dim() == 1:
        mask = mask.expand(layout[0], *mask.shape)
    if tuple(mask.shape) != layout:
        mask = F.interpolate(mask.float()[None, None], size=layout, mode="nearest")[0, 0] > 0.5
    return mask


def correction_splits(config):
    """The data of a mitigation config. With ``source_masks: localization``, the localization step's
    masks also stand in where an annotated artifact has no mask file, so that its clean/attacked
    subsets can be pasted (:mod:`datasets.pasted_artifacts`)."""
    from datasets import get_dataset_from_config

    if config.source_masks != "localization":
        return get_dataset_from_config(config)
    localized = load_localization_masks(config)
    return get_dataset_from_config(config, mask_provider=localized.get)


def localization_index(config) -> Path:
    """The ``index.json`` of ``localization_dir`` (there or in its ``<artifact>/`` folder)."""
    directory = Path(config.localization_dir)
    if not (directory / "index.json").is_file() and (directory / config.artifact / "index.json").is_file():
        directory = directory / config.artifact
    if not (directory / "index.json").is_file():
        raise UserError(f"'localization_dir': no index.json in {directory.resolve()} "
                        f"(nor in its '{config.artifact}' folder); run the localization step first")
    return directory / "index.json"


def localization_identity(config) -> str:
    """A digest of the localization masks a correction uses: its ``index.json`` and every mask it lists
    (a re-localization may keep the index and change the masks)."""
    index = localization_index(config)
    digest = hashlib.sha256(index.read_bytes())
    for entry in read_json(index).get("samples", {}).values():
        mask = index.parent / entry["mask"]
        digest.update(mask.read_bytes() if mask.is_file() else b"missing")
    return digest.hexdigest()[:16]


def load_localization_masks(config):
    """Sample id -> bool mask from ``localization_dir`` (``index.json`` there or in ``<artifact>/``)."""
    directory = localization_index(config).parent
    try:
        from utils.bias.localization import load_localized_masks
    except ImportError:
        raise UserError("the localization step's mask loader (utils.bias.localization) is not available") from None
    return load_localized_masks(directory)
