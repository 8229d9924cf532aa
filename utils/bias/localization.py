"""Artifact localization: CAV-conditioned LRP heatmaps, binary masks, and their evaluation.

Heatmap: start the LRP backward pass at layer ``l`` with
``R_l = max(0, ReLU(a_l(x)) * v)`` (``v`` the CAV, broadcast over space or tokens), propagate to
the input with the model's rules, sum over input channels and clamp at 0. Optional rules restrict
``R_l`` to positions whose projection ``<ReLU(a_l(x, p)), v>`` passes a gate (``position_gated``),
or to the connected region of such positions around the strongest one (``peak_region``); the gate's
threshold can be calibrated on samples without the artifact (:func:`projection_quantile`).

Mask: optional power ``gamma`` of the heatmap (z+ relevance is heavy-tailed; Otsu on it picks only
the peaks), Gaussian blur (kernel 7, sigma 8 at 224 px, scaled with the input size), a threshold
from a registry (``otsu``, ``percentile``, ``relative``), then optional clean-up
(:func:`refine_mask`): a morphological closing, hole filling, keeping the connected component with
the most relevance. Images give (H, W) masks, signals (T,) time masks.

The formulas, defaults and the reasons for the optional rules: experiments/localization/README.md,
"How it is computed".

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
from scipy import ndimage

from utils.errors import UserError
from utils.evaluation.relevance import relevance_share
from utils.io import atomic_path, read_json
from utils.layout import along_channels
from utils.registry import Registry

THRESHOLDS = Registry("localization_threshold")


# --- heatmaps -----------------------------------------------------------------------------------
INITIAL_RELEVANCE = Registry("localization_init")


def register_initial_relevance(name):
    """Decorator: ``init(activation, v_shaped, channel_axis) -> initial relevance`` (same shape)."""
    return INITIAL_RELEVANCE.register(name)


@register_initial_relevance("channelwise")
def _channelwise(activation, v, axis, threshold=0.0):
    """The published rule: ``max(0, ReLU(a) * v)``; every channel with a positive CAV weight contributes."""
    return (activation.clamp(min=0) * v).clamp(min=0)


@register_initial_relevance("position_gated")
def _position_gated(activation, v, axis, threshold=0.0):
    """``max(0, ReLU(a) * v)`` only at positions whose projection ``<ReLU(a(p)), v>`` exceeds ``threshold``.

    Why: channels shared by the artifact and a distractor (e.g. straight edges of band-aids and
    rulers) carry a positive weight, so the channelwise rule lights the distractor up as well; at the
    distractor's positions the channels the CAV weighs negatively win, and the gate removes them.
    """
    product = activation.clamp(min=0) * v
    return product.clamp(min=0) * (product.sum(axis, keepdim=True) > threshold)


@register_initial_relevance("peak_region")
def _peak_region(activation, v, axis, threshold=0.0):
    """``position_gated``, then only the connected region of gated positions that holds the position
    with the largest projection (the strongest instance of the concept).

    Why: a distractor that passes the gate elsewhere in the image (a ruler beside a band-aid) is cut
    off when it does not touch the artifact. Samples with several instances keep only one.
    """
    if axis not in (1, 1 - activation.dim()) or activation.dim() < 3:
        raise UserError("localization_init 'peak_region' needs a spatial feature map (N, C, *spatial); "
                        "use 'position_gated' for this layer")
    product = activation.clamp(min=0) * v
    projection = product.sum(1)
    gate = projection > threshold
    return product.clamp(min=0) * peak_regions(projection, gate).unsqueeze(1).to(activation.device)


def peak_regions(projection, gate) -> torch.Tensor:
    """Per sample (N, *spatial): the connected component of ``gate`` (full connectivity) containing
    the gated position of largest ``projection``; all False where nothing is gated."""
    projection, gate = projection.detach().cpu(), gate.cpu()
    keep = torch.zeros_like(gate)
    structure = ndimage.generate_binary_structure(gate.dim() - 1, gate.dim() - 1)
    for i, (values, allowed) in enumerate(zip(projection, gate)):
        if not allowed.any():
            continue
        labels, _ = ndimage.label(allowed.numpy(), structure)
        peak = int(torch.where(allowed, values, torch.tensor(-float("inf"))).argmax())
        keep[i] = torch.from_numpy(labels == labels.ravel()[peak])
    return keep


def projection(activation, direction, channel_axis=1) -> torch.Tensor:
    """``<ReLU(a(p)), v>`` at every position ``p`` (the channel axis summed out)."""
    v = torch.as_tensor(np.asarray(direction), dtype=torch.float32)
    return (activation.clamp(min=0) * along_channels(v, activation, channel_axis)).sum(channel_axis)


def projection_quantile(attributor, batches, layer, direction, quantile, channel_axis=1) -> float:
    """The ``quantile`` of the projection ``<ReLU(a_l(x, p)), v>`` over every position ``p`` of the
    inputs in ``batches`` (meant: training samples without the artifact).

    Used as the gate threshold, it keeps the positions that look more like the concept than all but
    a fraction ``1 - quantile`` of the positions in clean images: a per-position detector calibrated
    at that false-positive rate, whatever the offset of ``v`` (a pattern CAV has no bias).
    The activation is read where the localization reads it, in the attributor's ``init_rel``.
    """
    values = []

    def capture(activation):
        values.append(projection(activation, direction, channel_axis).detach().flatten().cpu())
        return torch.zeros_like(activation)

    for x in batches:
        attributor.attribute(x, start_layer=layer, init_rel=capture)
    if not values:
        raise UserError("no samples without the artifact to calibrate the localization gate on")
    return float(np.quantile(torch.cat(values).double().numpy(), quantile))


def cav_initial_relevance(direction, channel_axis=1, rule="channelwise", threshold=0.0):
    """``init_rel`` for the attributor: the registered ``rule`` with ``v`` along ``channel_axis``
    (``threshold``: the gate of the gated rules)."""
    init = INITIAL_RELEVANCE.get(rule)
    v = torch.as_tensor(np.asarray(direction), dtype=torch.float32)

    def init_rel(activation):
        return init(activation, along_channels(v, activation, channel_axis), channel_axis, threshold=threshold)

    return init_rel


def cav_heatmaps(attributor, x, layer, direction, channel_axis=1, rule="channelwise", threshold=0.0) -> torch.Tensor:
    """CAV-conditioned input heatmaps (N, *spatial), summed over input channels, clamped at 0."""
    init_rel = cav_initial_relevance(direction, channel_axis, rule, threshold)
    result = attributor.attribute(x, start_layer=layer, init_rel=init_rel)
    return result.heatmap.detach().float().sum(1).clamp(min=0).cpu()


# --- masks --------------------------------------------------------------------------------------
def register_threshold(name):
    """Decorator: ``threshold(values (flattened, >= 0), **options) -> float``."""
    return THRESHOLDS.register(name)


def list_thresholds():
    return THRESHOLDS.names()


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
    """Keeps the top ``100 - percentile`` % of the positions: assumes the artifact's size."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), percentile))


@register_threshold("relative")
def relative_threshold(values, relative=0.3, **_):
    """A fraction ``relative`` of the map's maximum."""
    return relative * float(np.max(values))


def blur_parameters(size, kernel_224=7, sigma_224=8.0):
    """Kernel size (odd) and sigma scaled from their values at 224 px to an input of ``size``."""
    scale = size / 224.0
    kernel = max(1, int(round(kernel_224 * scale)))
    return kernel + (kernel % 2 == 0), sigma_224 * scale


def scaled_radius(size, radius_224) -> int:
    """A radius in pixels (samples) given at 224 px, scaled to an input of ``size``."""
    return max(0, int(round(radius_224 * size / 224.0)))


def _ball(radius, ndim):
    grid = np.indices((2 * radius + 1,) * ndim) - radius
    return (grid ** 2).sum(0) <= radius ** 2


MASK_COMPONENTS = ("all", "most_relevant")


def refine_mask(mask, closing=0, fill_holes=False, components="all", relevance=None) -> np.ndarray:
    """Clean up a binary mask (any number of dimensions); the steps run in this order.

    closing : int
        Radius (pixels) of a morphological closing with a ball: bridges gaps narrower than about
        twice the radius, e.g. between the sparse edges and dots z+ relevance marks on one object.
        The mask is padded first, so objects touching the border are not eroded there.
    fill_holes : bool
        Fill background regions not connected to the border (signals: gaps between segments).
    components : ``"all"`` or ``"most_relevant"``
        Keep every connected component (full connectivity), or only the one holding the largest
        sum of ``relevance`` (same shape as ``mask``; default: the component's size).
    """
    mask = np.asarray(mask, dtype=bool)
    if components not in MASK_COMPONENTS:
        raise UserError(f"unknown mask_components '{components}'; valid: {', '.join(MASK_COMPONENTS)}")
    if closing > 0 and mask.any():
        padded = np.pad(mask, closing)
        closed = ndimage.binary_closing(padded, _ball(closing, mask.ndim))
        mask = closed[tuple(slice(closing, -closing) for _ in range(mask.ndim))]
    if fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    if components == "most_relevant" and mask.any():
        labels, n = ndimage.label(mask, ndimage.generate_binary_structure(mask.ndim, mask.ndim))
        if n > 1:
            weights = np.ones(mask.shape) if relevance is None else np.asarray(relevance, dtype=np.float64)
            sums = ndimage.sum_labels(weights, labels, np.arange(1, n + 1))
            mask = labels == 1 + int(np.argmax(sums))
    return mask


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


def heatmap_masks(heatmaps, threshold="otsu", kernel_224=7, sigma_224=8.0, power=1.0, closing_224=0.0,
                  fill_holes=False, components="all", **options) -> torch.Tensor:
    """Boolean masks (N, *spatial) of where the heatmaps (N, *spatial, >= 0) concentrate.

    ``power``: the positive heatmap is raised to it before the blur (< 1 compresses the peaks, so a
    histogram threshold such as Otsu separates the object from the background rather than the few
    strongest pixels from the rest). ``closing_224``: closing radius at 224 px (scaled like the
    blur). ``fill_holes``, ``components``: see :func:`refine_mask`, where the component with the most
    (positive, untransformed) relevance is kept. ``options`` go to the threshold
    (``percentile``, ``relative``).
    """
    threshold_of = THRESHOLDS.get(threshold)
    if power <= 0:
        raise UserError(f"mask power must be > 0, got {power}")
    size = max(heatmaps.shape[1:])
    kernel, sigma = blur_parameters(size, kernel_224, sigma_224)
    closing = scaled_radius(size, closing_224)
    positive = heatmaps.float().clamp(min=0)
    blurred = gaussian_blur(positive if power == 1 else positive ** power, kernel, sigma)
    masks = torch.zeros(blurred.shape, dtype=torch.bool)
    for i, values in enumerate(blurred):
        if values.max() <= 0:
            continue  # no positive relevance: nothing to localize
        values = (values / values.max()).numpy()
        mask = values > threshold_of(values, **options)
        masks[i] = torch.from_numpy(refine_mask(mask, closing, fill_holes, components, positive[i].numpy()))
    return masks


# --- metrics ------------------------------------------------------------------------------------
def iou(mask, target) -> float:
    mask, target = torch.as_tensor(mask).bool(), torch.as_tensor(target).bool()
    union = (mask | target).sum().item()
    return float("nan") if union == 0 else (mask & target).sum().item() / union


def artifact_relevance(heatmap, target) -> float:
    """One heatmap's share of positive relevance inside ``target``
    (:func:`utils.evaluation.relevance.relevance_share`: NaN without positive relevance)."""
    heatmap, target = torch.as_tensor(heatmap).float(), torch.as_tensor(target).bool()
    return float(relevance_share(heatmap[None], target[None])[0])


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
