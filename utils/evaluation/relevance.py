"""Artifact relevance: the share of positive input relevance that falls on the artifact.

For artifact samples the LRP heatmap of the true label is summed over channels, clamped at 0,
and ``sum(R+ * M) / sum(R+)`` is taken with the artifact mask ``M`` dilated by a few pixels (the
blended edge of an artifact carries relevance too).
"""
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from utils.lrp.attribution import get_attributor


def dilate(mask, pixels):
    """Binary dilation of (N, H, W) masks by ``pixels`` (square structuring element)."""
    if pixels <= 0:
        return mask
    return F.max_pool2d(mask[:, None].float(), 2 * pixels + 1, stride=1, padding=pixels)[:, 0] > 0


def relevance_share(heatmap, mask):
    """Per sample ``sum(R+ * M) / sum(R+)`` with R summed over channels; NaN without positive relevance."""
    positive = heatmap.sum(1).clamp(min=0) if heatmap.dim() == 4 else heatmap.clamp(min=0)
    total = positive.flatten(1).sum(1)
    inside = (positive * mask.to(positive)).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp(min=1e-30), torch.full_like(total, float("nan")))


def artifact_samples(dataset, artifact, max_samples=None):
    """Indices of samples carrying ``artifact`` (every sample of an ``attacked`` subset)."""
    indices = np.flatnonzero(dataset.artifact_labels(artifact))
    return indices[:max_samples] if max_samples else indices


def artifact_relevance(model, dataset, artifact, indices, batch_size=32, dilation=1, backend="auto", device="cpu"):
    """Mean artifact relevance (and per-sample values) of ``model`` over ``indices`` of ``dataset``."""
    attributor = get_attributor(model, backend=backend)
    shares = []
    for start in tqdm(range(0, len(indices), batch_size), desc="artifact relevance", leave=False):
        batch = indices[start:start + batch_size]
        x = torch.stack([dataset.normalize(dataset.load_raw(int(i))) for i in batch]).to(device)
        y = torch.as_tensor([dataset.label(int(i)) for i in batch], device=device)
        masks = torch.stack([dataset.get_mask(int(i), artifact) for i in batch]).to(device)
        heatmap = attributor.attribute(x, targets=y).heatmap
        shares.append(relevance_share(heatmap, dilate(masks, dilation)).cpu())
    values = torch.cat(shares).numpy() if shares else np.zeros(0)
    return {"artifact_relevance": float(np.nanmean(values)) if np.isfinite(values).any() else float("nan"),
            "n": int(np.isfinite(values).sum()), "per_sample": values.tolist()}
