"""Embedded synthetic dermoscopy: a lesion on textured skin, generated from (seed, split, index).

No files and no download: every image is drawn on the fly, deterministically. Two classes differ by
genuine lesion properties, with overlapping distributions so the task is learnable but not trivial:

* benign nevus: fairly round, regular border, one brown tone, mostly symmetric;
* melanoma: irregular border (higher harmonics of the outline), colour variegation (dark brown,
  black, blue-grey and red regions), asymmetric pigment.

Every image comes with its lesion (foreground) mask. By default a band-aid sits in about a third
of the benign images and in none of the melanomas (the shortcut the demo must reveal and fix);
rulers appear at equal rates in both classes (a harmless distractor).

``multi_label: true`` makes a small multi-label task of the same images (multi-hot labels
``benign``, ``melanoma``, ``large``): ``large`` is a property of the drawn lesion itself (it covers
more than ``LARGE_AREA`` of the image, about 40 % of the samples), so it is learnable and co-occurs
with either diagnosis. The artifacts stay tied to the diagnosis labels.
"""
import functools
import zlib

import numpy as np
import torch

from datasets.base import BaseDataset, flag_option, shared_render_cache
from datasets.procedural import smooth_field

CLASS_NAMES = ("benign", "melanoma")
MULTI_LABEL_NAMES = CLASS_NAMES + ("large",)
LARGE_AREA = 0.115  # share of the image a "large" lesion covers (about the 60th percentile)
SPLIT_SIZES = {"train": 2000, "val": 500, "test": 500}
DEFAULT_ARTIFACTS = {"band_aid": {"benign": 0.33}, "ruler": {"benign": 0.15, "melanoma": 0.15}}
# Parameter ranges (benign, melanoma) of the lesion properties that carry the diagnosis. They overlap
# on purpose: the genuine signal must be learnable but weaker than a band-aid, as in real data.
OVERLAP = {
    "irregularity": ((0.0, 0.065), (0.025, 0.105)),
    "variegation": ((0.0, 0.4), (0.22, 0.82)),
    "n_colours": ((1, 3), (2, 5)),
    "asymmetry": ((0.0, 0.15), (0.25, 1.0)),
}
_PIGMENTS = np.array([[0.30, 0.17, 0.10],  # dark brown
                      [0.10, 0.07, 0.08],  # black
                      [0.38, 0.45, 0.55],  # blue-grey veil
                      [0.62, 0.26, 0.24]])  # red


def render_lesion(rng, size, malignant):
    """Draw one image (size x size x 3, float32 in [0, 1]) and its lesion mask."""
    lin = np.linspace(-1, 1, size, dtype=np.float32)
    yy, xx = np.meshgrid(lin, lin, indexing="ij")

    # skin: base tone, smooth shading, fine grain
    tone = np.array([0.86, 0.66, 0.56]) + rng.uniform(-0.06, 0.04, 3)
    shading = 0.04 * smooth_field(rng, yy, xx, max_freq=2.0)
    grain = 0.015 * rng.standard_normal((size, size))
    skin = tone[None, None, :] + (shading + grain)[..., None]

    # outline: radius as a function of angle; melanomas have stronger high harmonics
    cy, cx = rng.uniform(-0.12, 0.12, 2)
    dy, dx = yy - cy, xx - cx
    theta, rho = np.arctan2(dy, dx), np.hypot(dy, dx)
    r0 = rng.uniform(0.3, 0.45)
    elongation = rng.uniform(0.0, 0.25)
    radius = r0 * (1 + elongation * np.cos(2 * (theta - rng.uniform(0, np.pi))))
    irregularity = rng.uniform(*OVERLAP["irregularity"][malignant])
    for k in range(3, 9):
        radius = radius * (1 + irregularity * rng.uniform(0.3, 1.0) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)))
    edge = rng.uniform(0.01, 0.03)
    alpha = 1 / (1 + np.exp(-(radius - rho) / edge))

    # pigment: benign one brown tone; melanoma variegated with asymmetric placement
    brown = np.array([0.52, 0.32, 0.22]) + rng.uniform(-0.06, 0.06, 3)
    darkening = 1 - 0.25 * np.clip(1 - rho / (r0 + 1e-6), 0, 1) * rng.uniform(0.2, 1.0)
    lesion = brown[None, None, :] * darkening[..., None]
    variegation = rng.uniform(*OVERLAP["variegation"][malignant])
    n_colours = rng.integers(*OVERLAP["n_colours"][malignant])
    for colour in rng.choice(len(_PIGMENTS), size=n_colours, replace=False):
        blob = smooth_field(rng, yy - cy, xx - cx, n_waves=4, max_freq=3.0)
        # pigment concentrated on one side: asymmetry, mostly in melanomas
        side = rng.uniform(0, 2 * np.pi)
        blob = blob + rng.uniform(*OVERLAP["asymmetry"][malignant]) * (np.cos(side) * dx + np.sin(side) * dy) / (r0 + 1e-6)
        weight = variegation * np.clip(blob - 0.3, 0, 1)[..., None]
        lesion = lesion * (1 - weight) + _PIGMENTS[colour][None, None, :] * weight

    image = skin * (1 - alpha[..., None]) + lesion * alpha[..., None]
    return np.clip(image, 0, 1).astype(np.float32), alpha > 0.5


@functools.lru_cache(maxsize=None)
def _drawn_lesion(img_size):
    """The process-wide memo of drawn lesions of one image size (float32 RGB + boolean mask each)."""
    def draw(seed, split_code, idx, malignant):
        return render_lesion(np.random.default_rng([seed, split_code, idx, 1]), img_size, malignant)
    return shared_render_cache(draw, bytes_per_sample=13 * img_size * img_size)


class SynthDermSplit(BaseDataset):
    """One split of the synthetic dermoscopy data set (no artifacts; see ``with_artifacts``)."""

    def __init__(self, split, n_samples, img_size=64, seed=0, p_malignant=0.5, augment=False, multi_label=False):
        self.img_size, self.seed, self._split_code = img_size, seed, zlib.crc32(split.encode())
        self.malignant = np.array([np.random.default_rng([seed, self._split_code, i, 0]).random() < p_malignant
                                   for i in range(n_samples)], dtype=bool)
        ids = [f"{split}_{i:05d}" for i in range(n_samples)]
        labels, names = self.malignant.astype(int), CLASS_NAMES
        if multi_label:  # drawing the lesions here is not wasted: the render cache keeps them for later
            large = [self._render(i)[1].mean() > LARGE_AREA for i in range(n_samples)]
            labels = np.stack([~self.malignant, self.malignant, large], axis=1).astype(np.float32)
            names = MULTI_LABEL_NAMES
        super().__init__(split, names, ids, labels, mean=(0.80, 0.61, 0.51), std=(0.13, 0.12, 0.12),
                         augment=augment, multi_label=multi_label)

    def _render(self, idx):
        return _drawn_lesion(self.img_size)(self.seed, self._split_code, int(idx), bool(self.malignant[idx]))

    def render_key(self, idx):
        return ("synth_derm", self.img_size, self.seed, self._split_code, int(idx), bool(self.malignant[idx]))

    def load_raw(self, idx):
        image, _ = self._render(idx)
        return torch.from_numpy(image).permute(2, 0, 1)

    def get_foreground_mask(self, idx):
        return torch.from_numpy(self._render(idx)[1].copy())


def build_synth_derm(img_size=64, seed=0, n_train=SPLIT_SIZES["train"], n_val=SPLIT_SIZES["val"],
                     n_test=SPLIT_SIZES["test"], p_malignant=0.5, multi_label=False):
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    multi_label = flag_option("multi_label", multi_label)
    return {split: SynthDermSplit(split, n, img_size, seed, p_malignant, augment=split == "train",
                                  multi_label=multi_label)
            for split, n in sizes.items()}
