"""Artifact relevance: the share of positive input relevance that falls on the artifact.

For artifact samples the LRP heatmap of the true label (for multi-hot labels: the sum of the
logits of the positive labels, or the biased class's without any, :mod:`utils.labels`) is summed
over channels, clamped at 0,
and ``sum(R+ * M) / sum(R+)`` is taken with the artifact mask ``M`` dilated by a few pixels (the
blended edge of an artifact carries relevance too).

Why a floor: the region an artifact covers gets some relevance even when the artifact is not
there (on the embedded data 0.11-0.13 for a band-aid covering 12% of the image), so no model,
however unbiased, scores 0. Given the same samples without the artifact, the share of the same
region is reported as ``without_artifact`` and ``excess = artifact_relevance - without_artifact``
is the part the artifact itself draws; a correction should shrink the excess.
"""
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from utils.labels import explained_labels, label_batch
from utils.lrp.attribution import get_attributor


def dilate(mask, pixels):
    """Binary dilation of (N, H, W) masks by ``pixels`` (square structuring element)."""
    if pixels <= 0:
        return mask
    return F.max_pool2d(mask[:, None].float(), 2 * pixels + 1, stride=1, padding=pixels)[:, 0] > 0


def relevance_share(heatmap, mask):
    """The artifact relevance of each sample: ``sum(R+ * M) / sum(R+)``, the share of the positive relevance
    that lies inside the mask. ``heatmap`` has the shape of ``mask`` (N, ...) or one more axis after the
    first, the channels, which are summed first. The one definition used by the evaluation, the
    localization report and RRR's ``positive_share`` penalty.

    A heatmap without positive relevance scores NaN: it points at nothing, and a 0 would reward exactly
    the broken model whose relevance vanished; callers count such samples instead of averaging them in.
    """
    relevance = heatmap.sum(1) if heatmap.dim() == mask.dim() + 1 else heatmap
    positive = relevance.clamp(min=0)
    total = positive.flatten(1).sum(1)
    inside = (positive * mask.to(positive)).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp(min=1e-30), torch.full_like(total, float("nan")))


def artifact_samples(dataset, artifact, max_samples=None):
    """Indices of samples carrying ``artifact`` (every sample of an ``attacked`` subset)."""
    indices = np.flatnonzero(dataset.artifact_labels(artifact))
    return indices[:max_samples] if max_samples else indices


def _mean(values):
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def artifact_relevance(model, dataset, artifact, indices, batch_size=32, dilation=1, backend="auto", device="cpu",
                       without=None, fallback=None):
    """Mean artifact relevance (and per-sample values) of ``model`` over ``indices`` of ``dataset``.

    ``without``: the same split with no inserted artifact (e.g. the ``clean`` subset); adds the share
    the same masked region gets there (``without_artifact``) and ``excess`` (see module docstring).
    ``fallback``: multi-label only, the class a sample without positive label is explained by (the
    biased class of the training split: every sample of an ``attacked`` subset carries the artifact).
    """
    attributor = get_attributor(model, backend=backend)

    def shares(data, batch, masks):
        x = torch.stack([data.normalize(data.load_raw(int(i))) for i in batch]).to(device)
        y = explained_labels(label_batch(data, batch), fallback).to(device)
        return relevance_share(attributor.attribute(x, targets=y).heatmap, masks).cpu()

    with_art, without_art = [], []
    for start in tqdm(range(0, len(indices), batch_size), desc="artifact relevance", leave=False):
        batch = indices[start:start + batch_size]
        masks = dilate(torch.stack([dataset.get_mask(int(i), artifact) for i in batch]).to(device), dilation)
        with_art.append(shares(dataset, batch, masks))
        if without is not None:
            without_art.append(shares(without, batch, masks))
    values = torch.cat(with_art).numpy() if with_art else np.zeros(0)
    result = {"artifact_relevance": _mean(values), "n": int(np.isfinite(values).sum()), "per_sample": values.tolist()}
    if without is not None:
        floor = _mean(torch.cat(without_art).numpy() if without_art else np.zeros(0))
        result.update(without_artifact=floor, excess=result["artifact_relevance"] - floor)
    return result
