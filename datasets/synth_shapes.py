"""Embedded synthetic shapes: one textured object on a cluttered, textured background.

A held-out benchmark setting that nobody tunes on: a six-class task unlike the two-class lesion
task of ``synth_derm``. Every image is drawn on the fly from (seed, split, index), without files.
The class is the object's *shape family*; everything else (size, rotation, aspect ratio, colours,
surface texture, edge softness, clutter, occlusion) is drawn from one distribution shared by all
classes, so neither colour nor texture identifies the class. The families overlap on purpose:

* ``disc``: an ellipse, sometimes clearly elongated;
* ``square``: a rectangle whose corners may be rounded towards a disc;
* ``triangle``: a triangle whose corners may be rounded towards a disc;
* ``star``: 5-7 points whose depth ranges from deep to shallow (a shallow star is a lumpy disc);
* ``ring``: an annulus whose hole ranges from wide to a small dot;
* ``cross``: a plus sign whose arms range from thin to thick (a thick cross is almost a square).

``dataset_options: {n_classes: 8}`` (4 to 8; default 6) keeps the first families in this order
and, above six, adds ``bar`` (an elongated rounded rectangle; a short one is a square) and
``crescent`` (a disc with a bite; a small bite is a disc): a task with as many classes as ISIC
2019, for measuring how the audit grows with the number of classes
(``experiments.benchmarks.scaling``). The first six families and the default task are unchanged.

All outlines also get a random smooth wobble, and a bar or blob from the background clutter may
lie across the object. Every image comes with its object (foreground) mask: the visible object
pixels. By default a timestamp is stamped on half of the stars and on nothing else (the shortcut
to reveal); stars are the family hardest to tell from the others, so the shortcut pays off.
"""
import functools
import zlib
from types import MappingProxyType

import numpy as np
import torch

from datasets.base import BaseDataset, shared_render_cache
from datasets.procedural import smooth_field
from datasets.registry import register_dataset

CLASS_NAMES = ("disc", "square", "triangle", "star", "ring", "cross")
EXTRA_FAMILIES = ("bar", "crescent")  # only with dataset_options n_classes 7 or 8
FAMILIES = CLASS_NAMES + EXTRA_FAMILIES
MIN_CLASSES = 4  # the shortcut class (star) is the fourth family
SPLIT_SIZES = {"train": 2400, "val": 600, "test": 600}
SHORTCUT_CLASS, SHORTCUT_RATE = "star", 0.5
DEFAULT_ARTIFACTS = {"timestamp": {SHORTCUT_CLASS: SHORTCUT_RATE}}
# Ranges of the parameter that makes each family look like itself. One end of every range reaches
# towards another family (rounded square/triangle, shallow star, small hole -> disc; thick cross
# -> square), so the genuine signal is learnable but not perfect and a shortcut can pay off.
# (read-only: the render cache keys on (seed, split, index, label) and would not see a change)
FAMILY_RANGES = MappingProxyType({
    "aspect": (1.0, 1.6),  # disc: ratio of the ellipse's axes
    "square_rounding": (0.0, 0.3),  # square: corner radius as a share of the half side
    "triangle_rounding": (0.0, 0.4),  # triangle: rounding as a share of the inradius
    "star_points": (5, 8),  # star: number of points (upper bound exclusive)
    "star_depth": (0.45, 0.9),  # star: inner radius as a share of the outer one
    "ring_hole": (0.2, 0.6),  # ring: hole radius as a share of the outer one
    "cross_arm": (0.25, 0.5),  # cross: arm half width as a share of the arm length
    "bar_aspect": (1.8, 3.2),  # bar: ratio of the long to the short side
    "crescent_bite": (0.3, 0.8),  # crescent: radius of the bite as a share of the disc's
})
# Nuisance ranges shared by every class: they set how hard it is to see the shape at all. Chosen
# once so that tiny_vgg at 64 px learns the task to roughly 80% in 20 epochs and leans on the
# timestamp (see the README); mid-tone backgrounds keep the timestamp visible in most images.
STYLE = MappingProxyType({
    "background": (0.2, 0.8),  # range of each channel of the background colour
    "background_pattern": (0.0, 0.4),  # strength of the background's surface pattern
    "object_pattern": (0.0, 0.4),  # strength of the object's surface pattern
    "clutter": (1, 5),  # number of bars and blobs on the background (upper bound exclusive)
    "clutter_size": 0.8,  # scale of the clutter items
    "occlusion": 0.15,  # probability that a clutter item lies across the object
    "contrast": (0.3, 0.55),  # luminance step from the background to the object
    "scale": (0.4, 0.65),  # object radius in image half widths
    "wobble": 0.05,  # largest smooth radial wobble of the outline
})
MEAN, STD = (0.49, 0.49, 0.48), (0.21, 0.21, 0.20)  # measured on 600 training images (timestamps included)


def _pattern(rng, yy, xx):
    """A surface pattern in [0, 1]: stripes, checks, dots or mottling, drawn alike for every class."""
    kind = rng.integers(4)
    freq, angle = rng.uniform(3.0, 9.0), rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    if kind == 0:  # stripes
        return 0.5 + 0.5 * np.cos(freq * np.pi * u)
    if kind == 1:  # soft checks
        return 0.5 + 0.5 * np.tanh(3 * np.cos(freq * np.pi * u) * np.cos(freq * np.pi * v))
    if kind == 2:  # dots
        return np.clip(2.5 * (np.cos(freq * np.pi * u) * np.cos(freq * np.pi * v) - 0.4), 0, 1)
    return 0.5 + 0.5 * np.tanh(1.5 * smooth_field(rng, yy, xx, n_waves=6, max_freq=freq))


def _colour_pair(rng, base=None):
    """Two colours of one surface: ``base`` (or a random colour) and a lighter or darker variant."""
    base = rng.uniform(*STYLE["background"], 3) if base is None else base
    other = np.clip(base + rng.choice([-1, 1]) * rng.uniform(0.1, 0.35) + rng.uniform(-0.08, 0.08, 3), 0, 1)
    return base, other


def _object_colour(rng, background):
    """A random colour set off from ``background`` by a random luminance step and hue jitter."""
    step = rng.uniform(*STYLE["contrast"])
    # mostly away from the background's brightness, so the step stays inside [0, 1]
    sign = -1.0 if background.mean() > 0.5 else 1.0
    sign = sign if rng.random() < 0.85 else -sign
    return np.clip(background + sign * step + rng.uniform(-0.2, 0.2, 3), 0.03, 0.97)


def _box(px, py, half_x, half_y):
    """Signed distance to an axis-aligned box (negative inside)."""
    qx, qy = np.abs(px) - half_x, np.abs(py) - half_y
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0)


def _triangle(px, py, radius):
    """Signed distance to an equilateral triangle with circumradius ``radius``, a point up (-y)."""
    k = np.sqrt(3.0)
    side = radius * k / 2  # half side
    px, py = np.abs(px) - side, -py + radius / 2  # fold onto the right half; base at +radius/2
    flip = px + k * py > 0
    px, py = np.where(flip, (px - k * py) / 2, px), np.where(flip, (-k * px - py) / 2, py)
    px = px - np.clip(px, -2 * side, 0)
    return -np.hypot(px, py) * np.sign(py)


def _outline(rng, label, px, py):
    """Signed distance (object units, negative inside) of shape family ``label`` of unit size."""
    rho, theta = np.hypot(px, py), np.arctan2(py, px)
    name = FAMILIES[label]
    if name == "disc":
        aspect = rng.uniform(*FAMILY_RANGES["aspect"])
        return np.hypot(px * np.sqrt(aspect), py / np.sqrt(aspect)) - 1.0
    if name == "square":
        aspect = rng.uniform(1.0, 1.35)
        half_x, half_y = 0.85 * np.sqrt(aspect), 0.85 / np.sqrt(aspect)
        rounding = rng.uniform(*FAMILY_RANGES["square_rounding"]) * min(half_x, half_y)
        return _box(px, py, half_x - rounding, half_y - rounding) - rounding
    if name == "triangle":
        rounding = rng.uniform(*FAMILY_RANGES["triangle_rounding"]) * 0.6  # inradius of radius 1.2: 0.6
        return _triangle(px, py, 1.2 - 2 * rounding) - rounding
    if name == "star":
        points = rng.integers(*FAMILY_RANGES["star_points"])
        depth = rng.uniform(*FAMILY_RANGES["star_depth"])
        # piecewise-linear radius between the points (1) and the notches (depth)
        wave = np.abs(((theta * points / (2 * np.pi)) % 1.0) - 0.5) * 2  # 1 at a point, 0 at a notch
        return rho - (depth + (1.05 - depth) * wave)
    if name == "ring":
        hole = rng.uniform(*FAMILY_RANGES["ring_hole"])
        return np.abs(rho - (1 + hole) / 2) - (1 - hole) / 2
    if name == "bar":
        aspect = rng.uniform(*FAMILY_RANGES["bar_aspect"])
        half_x, half_y = np.sqrt(aspect) * 0.75, 0.75 / np.sqrt(aspect)
        rounding = rng.uniform(0.0, 0.5) * half_y
        return _box(px, py, half_x - rounding, half_y - rounding) - rounding
    if name == "crescent":
        bite = rng.uniform(*FAMILY_RANGES["crescent_bite"])
        # the bite's centre sits on the rim, so a small bite only dents the disc
        return np.maximum(rho - 1.0, bite - np.hypot(px - 1.0, py))
    arm = rng.uniform(*FAMILY_RANGES["cross_arm"])  # cross
    return np.minimum(_box(px, py, 1.0, arm), _box(px, py, arm, 1.0))


def render_shape(rng, size, label):
    """Draw one image (size x size x 3, float32 in [0, 1]) of class ``label`` and its object mask."""
    lin = np.linspace(-1, 1, size, dtype=np.float32)
    yy, xx = np.meshgrid(lin, lin, indexing="ij")
    pixel = 2.0 / size  # one pixel in image units

    # background: two-colour pattern under smooth shading and grain
    back_a, back_b = _colour_pair(rng)
    pattern = _pattern(rng, yy, xx)[..., None] * rng.uniform(*STYLE["background_pattern"])
    image = back_a * (1 - pattern) + back_b * pattern
    image = image + (0.06 * smooth_field(rng, yy, xx, n_waves=5, max_freq=2.0))[..., None]

    # clutter under the object: short bars and small blobs in random colours
    def clutter_item():
        cy, cx = rng.uniform(-0.95, 0.95, 2)
        colour = rng.uniform(0.05, 0.95, 3)
        if rng.random() < 0.5:
            angle, width = rng.uniform(0, np.pi), rng.uniform(0.02, 0.05)
            length = rng.uniform(0.15, 0.45) * STYLE["clutter_size"]
            u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
            v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
            dist = _box(u, v, length, width)
        else:
            dist = np.hypot(xx - cx, yy - cy) - rng.uniform(0.04, 0.1) * STYLE["clutter_size"]
        return colour, np.clip(0.5 - dist / pixel, 0, 1)[..., None]

    for _ in range(rng.integers(*STYLE["clutter"])):
        colour, alpha = clutter_item()
        image = image * (1 - alpha) + colour * alpha

    # the object: a shape family in object coordinates (rotated, scaled, shifted, wobbly outline)
    scale = rng.uniform(*STYLE["scale"])  # object radius in image units
    cy, cx = rng.uniform(-0.85 + scale, 0.85 - scale, 2)
    angle = rng.uniform(0, 2 * np.pi)
    dy, dx = (yy - cy) / scale, (xx - cx) / scale
    px = dx * np.cos(angle) + dy * np.sin(angle)
    py = -dx * np.sin(angle) + dy * np.cos(angle)
    wobble = 1 + rng.uniform(0.0, STYLE["wobble"]) * smooth_field(rng, py, px, n_waves=3, max_freq=1.5)
    dist = _outline(rng, label, px / wobble, py / wobble) * scale  # image units
    softness = rng.uniform(0.6, 1.6) * pixel
    alpha = 1 / (1 + np.exp(np.clip(dist / softness, -50, 50)))
    obj_a, obj_b = _colour_pair(rng, _object_colour(rng, image.mean((0, 1))))
    pattern = _pattern(rng, dy, dx)[..., None] * rng.uniform(*STYLE["object_pattern"])
    surface = obj_a * (1 - pattern) + obj_b * pattern
    # a little darker towards the rim, by a random amount: a hint of volume, alike for every class
    rim = (1 - 0.25 * np.clip(np.hypot(px, py), 0, 1))[..., None]
    surface = surface * rim ** rng.uniform(0, 1)
    image = image * (1 - alpha[..., None]) + surface * alpha[..., None]
    visible = alpha > 0.5

    # sometimes a piece of clutter lies across the object and hides part of it
    if rng.random() < STYLE["occlusion"]:
        colour, cover = clutter_item()
        image = image * (1 - cover) + colour * cover
        visible &= cover[..., 0] < 0.5

    image = image + rng.uniform(0.005, 0.03) * rng.standard_normal((size, size, 1))
    return np.clip(image, 0, 1).astype(np.float32), visible


@functools.lru_cache(maxsize=None)
def _drawn_shape(img_size):
    """The process-wide memo of drawn shapes of one image size (float32 RGB + boolean mask each)."""
    def draw(seed, split_code, idx, label):
        return render_shape(np.random.default_rng([seed, split_code, idx, 1]), img_size, label)
    return shared_render_cache(draw, bytes_per_sample=13 * img_size * img_size)


class SynthShapesSplit(BaseDataset):
    """One split of the synthetic shapes data set (no artifacts; see ``with_artifacts``)."""

    def __init__(self, split, n_samples, img_size=64, seed=0, augment=False, n_classes=len(CLASS_NAMES)):
        self.img_size, self.seed, self._split_code = img_size, seed, zlib.crc32(split.encode())
        # the label is drawn from its own stream, so labels never depend on the image size
        labels = np.array([np.random.default_rng([seed, self._split_code, i, 0]).integers(n_classes)
                           for i in range(n_samples)], dtype=np.int64)
        ids = [f"{split}_{i:05d}" for i in range(n_samples)]
        super().__init__(split, FAMILIES[:n_classes], ids, labels, mean=MEAN, std=STD, augment=augment)

    def _render(self, idx):
        return _drawn_shape(self.img_size)(self.seed, self._split_code, int(idx), int(self.labels[idx]))

    def render_key(self, idx):
        return ("synth_shapes", self.img_size, self.seed, self._split_code, int(idx), int(self.labels[idx]))

    def load_raw(self, idx):
        image, _ = self._render(idx)
        return torch.from_numpy(image).permute(2, 0, 1)

    def get_foreground_mask(self, idx):
        return torch.from_numpy(self._render(idx)[1].copy())


@register_dataset("synth_shapes", default_artifacts=DEFAULT_ARTIFACTS,
                  attacked_default={"artifact_type": "timestamp", "attacked_classes": [SHORTCUT_CLASS],
                                    "p_artifact": SHORTCUT_RATE})
def build_synth_shapes(img_size=64, seed=0, n_train=SPLIT_SIZES["train"], n_val=SPLIT_SIZES["val"],
                       n_test=SPLIT_SIZES["test"], n_classes=len(CLASS_NAMES)):
    """Build the train/val/test splits of the embedded shapes data set (artifacts are added by the registry).

    Parameters
    ----------
    img_size : int
        Side of the square images in pixels.
    seed : int
        Seed of the whole data set: images, labels and (through the registry) artifacts.
    n_train, n_val, n_test : int
        Number of samples of each split (``dataset_options``).
    n_classes : int
        Shape families, 4 to 8 (``dataset_options``): the first ``n_classes`` of ``FAMILIES``.

    Returns
    -------
    dict
        ``{"train": ..., "val": ..., "test": ...}`` of :class:`SynthShapesSplit`; only the
        training split is augmented (random flips).
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or not MIN_CLASSES <= n_classes <= len(FAMILIES):
        from utils.errors import UserError

        raise UserError(f"dataset_options.n_classes: an integer from {MIN_CLASSES} to {len(FAMILIES)} "
                        f"(families {', '.join(FAMILIES)}), got {n_classes!r}")
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    return {split: SynthShapesSplit(split, n, img_size, seed, augment=split == "train", n_classes=n_classes)
            for split, n in sizes.items()}
