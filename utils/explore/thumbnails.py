"""Small PNGs of samples, heatmaps, masks and neuron references, rendered once and cached on disk.

A page of 25,000 samples must not draw 25,000 images: the browser asks for a thumbnail when it shows
one (a hovered point, a card of the review round), the server renders it the first time and keeps
the file. Files live under ``<output root>/explore/<dataset>/<model>/<config>/thumbnails/`` in a
folder named after what they were drawn from (the store's fingerprint, the localization index's
digest, ...), so a recomputed store or localization gets fresh thumbnails and never stale ones.
Every file is written atomically: two requests drawing the same thumbnail at once both succeed.
"""
import hashlib
import re
from pathlib import Path

import h5py
import numpy as np
from PIL import Image, ImageDraw

from utils.io import atomic_path

MAX_SIDE = 128  # images larger than this are shrunk; smaller ones are kept and scaled by the browser
SIGNAL_SIZE = (256, 16)  # width, height per lead of a drawn signal
_PLAIN = re.compile(r"[A-Za-z0-9_.-]{1,120}")


def file_name(sample_id) -> str:
    """``sample_id`` as a file name: itself when it is plain, else a digest (ids may hold any text)."""
    sample_id = str(sample_id)
    if _PLAIN.fullmatch(sample_id) and not sample_id.startswith("."):
        return sample_id
    return "id-" + hashlib.sha1(sample_id.encode()).hexdigest()


def digest(*parts) -> str:
    return hashlib.sha1("\0".join(str(p) for p in parts).encode()).hexdigest()[:12]


def store_key(path) -> str:
    """What identifies a preprocessing store's content: its fingerprint (the settings it was computed
    with), else (a store written by other code) its size and modification time."""
    path = Path(path)
    with h5py.File(path, "r") as handle:
        fingerprint = handle.attrs.get("fingerprint")
    if fingerprint is not None:
        return str(fingerprint)
    stat = path.stat()
    return digest(stat.st_size, stat.st_mtime_ns)


# --- drawing -------------------------------------------------------------------------------------
def image_png(sample) -> Image.Image:
    """An image (C, H, W) in [0, 1] as RGB or grey; a signal (C, T) as one curve per channel."""
    sample = np.asarray(sample, dtype=np.float32)
    if sample.ndim == 2:
        return _signal_png(sample)
    pixels = np.clip(sample, 0, 1)
    if pixels.shape[0] not in (1, 3):  # other channel counts: their mean, as grey
        pixels = pixels.mean(0, keepdims=True)
    pixels = (pixels.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
    picture = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    return _shrink(picture)


def _signal_png(signal) -> Image.Image:
    width, height = SIGNAL_SIZE
    picture = Image.new("RGB", (width, height * len(signal)), "white")
    draw = ImageDraw.Draw(picture)
    for lead, values in enumerate(signal):
        low, high = float(values.min()), float(values.max())
        span = high - low or 1.0
        xs = np.linspace(0, width - 1, len(values))
        ys = lead * height + (height - 2) * (1 - (values - low) / span) + 1
        draw.line(list(zip(xs.tolist(), ys.tolist())), fill=(30, 30, 30), width=1)
    return picture


def heatmap_png(heatmap) -> Image.Image:
    """Relevance on a blue-white-red scale symmetric about 0 (red: for the class); a signal's (T,)
    relevance as a coloured strip."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if heatmap.ndim == 1:
        heatmap = heatmap[None, :]
    bound = float(np.abs(heatmap).max()) or 1.0
    v = np.clip(heatmap / bound, -1, 1)
    # bwr: -1 blue (0, 0, 1) -> 0 white -> +1 red (1, 0, 0)
    red = np.where(v < 0, 1 + v, 1.0)
    blue = np.where(v > 0, 1 - v, 1.0)
    green = 1 - np.abs(v)
    pixels = (np.stack([red, green, blue], -1) * 255 + 0.5).astype(np.uint8)
    picture = Image.fromarray(pixels)
    if picture.height == 1:
        picture = picture.resize((SIGNAL_SIZE[0], SIGNAL_SIZE[1]), Image.NEAREST)
    return _shrink(picture)


def overlay_png(sample, mask) -> Image.Image:
    """The image with ``mask`` in translucent red (a signal: the masked time steps shaded)."""
    base = image_png(sample).convert("RGB")
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 1:  # time mask of a signal: shade the columns
        columns = np.interp(np.arange(base.width), np.linspace(0, base.width - 1, len(mask)), mask) > 0.5
        mask = np.repeat(columns[None, :], base.height, 0)
    layer = Image.fromarray((mask * 255).astype(np.uint8)).resize(base.size, Image.NEAREST)
    red = Image.new("RGB", base.size, (230, 30, 30))
    return Image.composite(Image.blend(base, red, 0.55), base, layer)


def crop_png(sample, box) -> Image.Image:
    """The region ``box`` ([y0, y1, x0, x1], or [t0, t1] of a signal) of a sample."""
    sample = np.asarray(sample)
    cropped = sample[:, box[0]:box[1], box[2]:box[3]] if sample.ndim == 3 else sample[:, box[0]:box[1]]
    return image_png(cropped)


def _shrink(picture):
    if max(picture.size) <= MAX_SIDE:
        return picture
    scale = MAX_SIDE / max(picture.size)
    return picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                          Image.BILINEAR)


# --- the cache -------------------------------------------------------------------------------------
class ThumbnailCache:
    """PNG files under ``folder``, drawn by ``render()`` the first time each is asked for."""

    def __init__(self, folder):
        self.folder = Path(folder).resolve()  # absolute: Flask resolves a relative file against its package

    def path(self, *parts) -> Path:
        return self.folder.joinpath(*parts)

    def get(self, parts, render) -> Path:
        path = self.path(*parts)
        if not path.is_file():
            picture = render()
            with atomic_path(path) as tmp:
                picture.save(tmp, format="PNG")
        return path
