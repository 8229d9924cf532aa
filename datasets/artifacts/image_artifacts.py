"""Realistic dermoscopy artifacts (band-aid, ruler, skin marker) and the controlled artifacts of
the published work (microscope vignette, timestamp text, white colour blend)."""
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from datasets.artifacts.registry import register_artifact


def _grid(h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


def _rotated_box(h, w, cy, cx, half_len, half_wid, angle, softness=0.7):
    """Opacity of a rotated rectangle with anti-aliased edges (distances in pixels)."""
    yy, xx = _grid(h, w)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    inside = np.minimum(half_len - np.abs(u), half_wid - np.abs(v))
    return np.clip(inside / softness + 0.5, 0.0, 1.0), u, v


@register_artifact("band_aid")
def band_aid(image, rng, foreground=None):
    """A tan adhesive strip with a lighter pad and perforation dots, beside the lesion.

    The tan is a few shades darker and more saturated than the skin, as on real dermoscopy photos.
    (An earlier, skin-toned strip was learnt by the demo model only as a faint, distributed cue:
    no single neuron of any layer detected it, so no neuron-level reveal method could find it.)"""
    h, w = image.shape[:2]
    size = min(h, w)
    angle = rng.uniform(0, np.pi)
    radius, theta = rng.uniform(0.28, 0.36) * size, rng.uniform(0, 2 * np.pi)
    cy, cx = h / 2 + radius * np.sin(theta), w / 2 + radius * np.cos(theta)
    half_len, half_wid = rng.uniform(0.22, 0.3) * size, rng.uniform(0.07, 0.1) * size
    alpha, u, v = _rotated_box(h, w, cy, cx, half_len, half_wid, angle)
    tone = np.array([0.80, 0.58, 0.40]) + rng.uniform(-0.04, 0.04, 3)
    colour = np.broadcast_to(tone, (h, w, 3)).copy()
    pad = (np.abs(u) < 0.35 * half_len) & (np.abs(v) < 0.75 * half_wid)
    colour[pad] = np.clip(tone + 0.09, 0, 1)
    dots = (~pad) & (np.cos(u * 2.2) > 0.8) & (np.cos(v * 2.2) > 0.8)
    colour[dots] = tone - 0.12
    return colour.astype(image.dtype), alpha


@register_artifact("ruler")
def ruler(image, rng, foreground=None):
    """A translucent ruler along one image border with dark tick marks."""
    h, w = image.shape[:2]
    size = min(h, w)
    width = max(3, int(round(rng.uniform(0.08, 0.12) * size)))
    offset = int(rng.integers(0, max(1, size // 16)))
    alpha = np.zeros((h, w), np.float32)
    colour = np.broadcast_to(np.array([0.92, 0.92, 0.85]), (h, w, 3)).copy()
    side = int(rng.integers(4))
    alpha_strip = np.full((width, max(h, w)), 0.85, np.float32)
    colour_strip = np.broadcast_to(colour[0, 0], (width, max(h, w), 3)).copy()
    spacing = max(2, size // 24)
    for i, t in enumerate(range(int(rng.integers(0, spacing)), max(h, w), spacing)):
        tick_len = width // 2 if i % 5 else width - 1
        colour_strip[:tick_len, t] = 0.1
        alpha_strip[:tick_len, t] = 0.95
    if side in (0, 1):  # top / bottom
        strip, cstrip = alpha_strip[:, :w], colour_strip[:, :w]
        rows = slice(offset, offset + width) if side == 0 else slice(h - offset - width, h - offset)
        alpha[rows] = strip if side == 0 else strip[::-1]
        colour[rows] = cstrip if side == 0 else cstrip[::-1]
    else:  # left / right
        strip, cstrip = alpha_strip[:, :h].T, colour_strip[:, :h].transpose(1, 0, 2)
        cols = slice(offset, offset + width) if side == 2 else slice(w - offset - width, w - offset)
        alpha[:, cols] = strip if side == 2 else strip[:, ::-1]
        colour[:, cols] = cstrip if side == 2 else cstrip[:, ::-1]
    return colour.astype(image.dtype), alpha


@register_artifact("skin_marker")
def skin_marker(image, rng, foreground=None):
    """Purple surgical-marker strokes near the lesion."""
    h, w = image.shape[:2]
    size = min(h, w)
    yy, xx = _grid(h, w)
    alpha = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        theta = rng.uniform(0, 2 * np.pi)
        radius = rng.uniform(0.3, 0.42) * size
        cy, cx = h / 2 + radius * np.sin(theta), w / 2 + radius * np.cos(theta)
        length, angle = rng.uniform(0.06, 0.15) * size, theta + np.pi / 2 + rng.uniform(-0.4, 0.4)
        # distance to a short segment, thresholded to a stroke of ~3% of the image
        t = np.clip(((xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)) / length, -1, 1)
        dist = np.hypot(xx - (cx + t * length * np.cos(angle)), yy - (cy + t * length * np.sin(angle)))
        alpha = np.maximum(alpha, np.clip(0.03 * size - dist + 0.5, 0, 1) * 0.8)
    colour = np.broadcast_to(np.array([0.42, 0.18, 0.55]) + rng.uniform(-0.05, 0.05, 3), (h, w, 3))
    return colour.astype(image.dtype), alpha


@register_artifact("microscope")
def microscope(image, rng, foreground=None):
    """Black border outside a centred circle (dermatoscope vignette), radius ~0.5 of the size."""
    h, w = image.shape[:2]
    yy, xx = _grid(h, w)
    radius = min(h, w) * 0.5 * rng.uniform(0.9, 1.05)
    cy, cx = h / 2 + rng.uniform(-0.03, 0.03) * h, w / 2 + rng.uniform(-0.03, 0.03) * w
    alpha = np.clip(np.hypot(yy - cy, xx - cx) - radius + 0.5, 0.0, 1.0)
    colour = np.full((h, w, 3), rng.uniform(0.0, 0.04), dtype=np.float32)
    return colour.astype(image.dtype), alpha


@register_artifact("timestamp")
def timestamp(image, rng, foreground=None):
    """A random date-time text near a random corner, slightly rotated, near-black or near-white."""
    h, w = image.shape[:2]
    text = (f"{rng.integers(2000, 2025)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d} "
            f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}")
    font = ImageFont.load_default(size=max(6, h // 14))
    box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    canvas = Image.new("L", (box[2] + 4, box[3] + 4))
    ImageDraw.Draw(canvas).text((2, 2), text, fill=255, font=font)
    canvas = canvas.rotate(rng.uniform(-8, 8), expand=True, resample=Image.BILINEAR)
    scale = min(1.0, 0.9 * w / canvas.width)
    if scale < 1.0:
        canvas = canvas.resize((max(1, int(canvas.width * scale)), max(1, int(canvas.height * scale))))
    text_alpha = np.asarray(canvas, dtype=np.float32) / 255.0
    th, tw = text_alpha.shape
    margin = max(1, h // 32)
    top = margin if rng.random() < 0.5 else max(0, h - th - margin)
    left = margin if rng.random() < 0.5 else max(0, w - tw - margin)
    alpha = np.zeros((h, w), np.float32)
    alpha[top:top + th, left:left + tw] = text_alpha[: h - top, : w - left]
    shade = rng.uniform(0.0, 0.08) if rng.random() < 0.5 else rng.uniform(0.92, 1.0)
    return np.full((h, w, 3), shade, dtype=image.dtype), alpha


@register_artifact("white_color")
def white_color(image, rng, foreground=None):
    """The whole image blended towards white (alpha 0.2); the mask is the whole image."""
    h, w = image.shape[:2]
    return np.ones((h, w, 3), dtype=image.dtype), np.full((h, w), 0.2, np.float32)
