"""Artifact localization: CAV-conditioned LRP heatmaps, binary masks, and their evaluation.

Heatmap (METHODS.md section 4): start the LRP backward pass at layer ``l`` with
``R_l = max(0, ReLU(a_l(x)) * v)`` (``v`` the CAV, broadcast over space or tokens), propagate to
the input with the model's rules, sum over input channels and clamp at 0.

Mask: Gaussian blur (kernel 7, sigma 8 at 224 px, scaled with the input size) then a threshold
from a registry (``otsu``, ``percentile``). Images give (H, W) masks, signals (T,) time masks.

Output layout read by mitigation (keep it stable)::

    <localization dir>/<artifact>/masks/<sample_id>.png     uint8 0/255, image size (signals: .npy bool)
    <localization dir>/<artifact>/heatmaps/<sample_id>.npy  float32
    <localization dir>/<artifact>/index.json  {"artifact", "split", "samples": {id: {"mask", "heatmap"}}}
"""
import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from utils.errors import UserError
from utils.io import atomic_path, read_json

_THRESHOLDS = {}


# --- heatmaps -----------------------------------------------------------------------------------
_INITS = {}


def register_initial_relevance(name):
    """Decorator: ``init(activation, v_shaped, channel_axis) -> initial relevance`` (same shape)."""

    def decorate(func):
        _INITS[name] = func
        return func

    return decorate


@register_initial_relevance("channelwise")
def _channelwise(activation, v, axis):
    """METHODS.md: ``max(0, ReLU(a) * v)``; every channel with a positive CAV weight contributes."""
    return (activation.clamp(min=0) * v).clamp(min=0)


@register_initial_relevance("position_gated")
def _position_gated(activation, v, axis):
    """``max(0, ReLU(a) * v)`` only at positions whose projection ``<ReLU(a(p)), v>`` is positive.

    Why: channels shared by the artifact and a distractor (e.g. straight edges of band-aids and
    rulers) carry a positive weight, so the channelwise rule lights the distractor up as well; at the
    distractor's positions the channels the CAV weighs negatively win, and the gate removes them.
    """
    product = activation.clamp(min=0) * v
    return product.clamp(min=0) * (product.sum(axis, keepdim=True) > 0)


def cav_initial_relevance(direction, channel_axis=1, rule="channelwise"):
    """``init_rel`` for the attributor: the registered ``rule`` with ``v`` along ``channel_axis``."""
    if rule not in _INITS:
        raise UserError(f"unknown localization_init '{rule}'; valid: {', '.join(sorted(_INITS))}")
    v = torch.as_tensor(np.asarray(direction), dtype=torch.float32)

    def init_rel(activation):
        shape = [1] * activation.dim()
        shape[channel_axis] = -1
        return _INITS[rule](activation, v.to(activation).view(shape), channel_axis)

    return init_rel


def cav_heatmaps(attributor, x, layer, direction, channel_axis=1, rule="channelwise") -> torch.Tensor:
    """CAV-conditioned input heatmaps (N, *spatial), summed over input channels, clamped at 0."""
    result = attributor.attribute(x, start_layer=layer, init_rel=cav_initial_relevance(direction, channel_axis, rule))
    return result.heatmap.detach().float().sum(1).clamp(min=0).cpu()


# --- masks --------------------------------------------------------------------------------------
def register_threshold(name):
    """Decorator: ``threshold(values (flattened, >= 0), **options) -> float``."""

    def decorate(func):
        _THRESHOLDS[name] = func
        return func

    return decorate


def list_thresholds():
    return sorted(_THRESHOLDS)


@register_threshold("otsu")
def otsu_threshold(values, bins=256, **_):
    """Otsu's threshold: maximises the between-class variance of a ``bins``-bin histogram."""
    values = np.asarray(values, dtype=np.float64).ravel()
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return high
    hist, edges = np.histogram(values, bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(hist)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(hist * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[1:][np.argmax(between[:-1])]) if len(between) > 1 else high


@register_threshold("percentile")
def percentile_threshold(values, percentile=90.0, **_):
    return float(np.percentile(np.asarray(values, dtype=np.float64), percentile))


def blur_parameters(size, kernel_224=7, sigma_224=8.0):
    """Kernel size (odd) and sigma scaled from their values at 224 px to an input of ``size``."""
    scale = size / 224.0
    kernel = max(1, int(round(kernel_224 * scale)))
    return kernel + (kernel % 2 == 0), sigma_224 * scale


def gaussian_blur(heatmaps, kernel, sigma) -> torch.Tensor:
    """Separable Gaussian blur of (N, H, W) or (N, T) maps, reflecting at the borders."""
    if kernel <= 1 or sigma <= 0:
        return heatmaps
    coords = torch.arange(kernel, dtype=torch.float32) - (kernel - 1) / 2
    weights = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    weights = (weights / weights.sum()).view(1, 1, -1)
    out = heatmaps.float().unsqueeze(1)
    pad = kernel // 2
    for dim in range(2, out.dim()):  # blur along each spatial axis in turn
        moved = out.movedim(dim, -1)
        shape = moved.shape
        flat = F.pad(moved.reshape(-1, 1, shape[-1]), (pad, pad), mode="reflect" if shape[-1] > pad else "replicate")
        out = F.conv1d(flat, weights).reshape(shape).movedim(-1, dim)
    return out.squeeze(1)


def heatmap_masks(heatmaps, threshold="otsu", kernel_224=7, sigma_224=8.0, **options) -> torch.Tensor:
    """Boolean masks (N, *spatial) of where the heatmaps (N, *spatial, >= 0) concentrate."""
    if threshold not in _THRESHOLDS:
        raise UserError(f"unknown mask threshold '{threshold}'; valid: {', '.join(list_thresholds())}")
    kernel, sigma = blur_parameters(max(heatmaps.shape[1:]), kernel_224, sigma_224)
    blurred = gaussian_blur(heatmaps.clamp(min=0), kernel, sigma)
    masks = torch.zeros(blurred.shape, dtype=torch.bool)
    for i, values in enumerate(blurred):
        if values.max() <= 0:
            continue  # no positive relevance: nothing to localize
        values = (values / values.max()).numpy()
        masks[i] = torch.from_numpy(values > _THRESHOLDS[threshold](values, **options))
    return masks


# --- metrics ------------------------------------------------------------------------------------
def iou(mask, target) -> float:
    mask, target = torch.as_tensor(mask).bool(), torch.as_tensor(target).bool()
    union = (mask | target).sum().item()
    return float("nan") if union == 0 else (mask & target).sum().item() / union


def artifact_relevance(heatmap, target) -> float:
    """Share of the positive relevance inside the target mask: ``sum(R+ * M) / sum(R+)``.

    A heatmap without positive relevance scores 0: it points at nothing, so not at the artifact
    either (NaN would silently drop the failures from the mean).
    """
    positive = torch.as_tensor(heatmap).float().clamp(min=0)
    total = positive.sum().item()
    return 0.0 if total == 0 else (positive * torch.as_tensor(target).bool()).sum().item() / total


# --- files --------------------------------------------------------------------------------------
MASK_SUFFIX = {"image": ".png", "signal": ".npy"}


def write_mask(path, mask):
    """Images: PNG uint8 0/255; signals: .npy bool (by ``path``'s suffix)."""
    mask = np.asarray(mask, dtype=bool)
    with atomic_path(path) as tmp:
        if Path(path).suffix == ".png":
            from PIL import Image

            Image.fromarray(mask.astype(np.uint8) * 255).save(tmp, format="PNG")
        else:
            _save_npy(tmp, mask)


def write_heatmap(path, heatmap):
    with atomic_path(path) as tmp:
        _save_npy(tmp, np.asarray(heatmap, dtype=np.float32))


def _save_npy(path, array):
    # np.save on a path would append '.npy' to the temporary name; write through a buffer instead
    buffer = io.BytesIO()
    np.save(buffer, array)
    Path(path).write_bytes(buffer.getvalue())


def read_mask(path) -> torch.Tensor:
    path = Path(path)
    if path.suffix == ".png":
        from PIL import Image

        return torch.from_numpy(np.asarray(Image.open(path)) > 127)
    return torch.from_numpy(np.load(path).astype(bool))


def load_index(directory) -> dict:
    path = Path(directory) / "index.json"
    if not path.is_file():
        raise UserError(f"no localization results at {path}; run experiments.localization.localize_artifacts first")
    return read_json(path)


def load_localized_masks(directory) -> dict:
    """``{sample_id: bool tensor}`` (image size, or (T,) for signals) from a localization folder
    (``<localization dir>/<artifact>``)."""
    directory = Path(directory)
    index = load_index(directory)
    return {sid: read_mask(directory / entry["mask"]) for sid, entry in index["samples"].items()}


def load_localized_heatmaps(directory) -> dict:
    directory = Path(directory)
    index = load_index(directory)
    return {sid: torch.from_numpy(np.load(directory / entry["heatmap"])) for sid, entry in index["samples"].items()}


def is_safe_id(sample_id) -> bool:
    """Sample ids become file names: no path separators or parent references."""
    return bool(sample_id) and "/" not in sample_id and "\\" not in sample_id and sample_id not in (".", "..")
