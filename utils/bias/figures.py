"""Figures of bias modelling: ROC/PR curves, grids of samples, the annotation curve."""
import contextlib

import numpy as np
import torch

from utils.bias.ranking import pr_curve_points, roc_curve_points
from utils.plots import plt, save_figure


@contextlib.contextmanager
def no_augmentation(dataset):
    """Show samples as the model sees them at test time (training splits augment by default)."""
    augment, dataset.augment = dataset.augment, False
    try:
        yield dataset
    finally:
        dataset.augment = augment


def display_input(dataset, idx) -> np.ndarray:
    """Sample ``idx`` denormalised to [0, 1]: (H, W, C) for images, (C, T) for signals."""
    with no_augmentation(dataset):
        x, _ = dataset[idx]
    x = dataset.denormalize(torch.as_tensor(x)).clamp(0, 1)
    if getattr(dataset, "modality", "image") == "signal":
        return x.numpy()
    return x.permute(1, 2, 0).numpy()


def _draw(ax, sample, overlay=None, signal=False):
    if signal:
        _draw_signal(ax, sample, overlay)
        return
    ax.imshow(sample.squeeze(), cmap="gray" if sample.shape[-1] == 1 else None)
    if overlay is not None:
        ax.imshow(np.ma.masked_where(overlay <= 0, overlay), cmap="autumn", alpha=0.45)


def _draw_signal(ax, signal, overlay=None):
    offsets = np.arange(len(signal))[:, None] * 1.1
    ax.plot((signal + offsets).T, lw=0.6, color="k")
    if overlay is not None:
        ax.fill_between(np.arange(len(overlay)), 0, offsets.max() + 1, where=overlay > 0, color="r", alpha=0.25)
    ax.set_yticks([])


def sample_grid(dataset, indices, titles, path, overlays=None, ncols=8, title=None):
    """A grid of samples (denormalised) with a title each, optionally with a mask overlay."""
    n = max(len(indices), 1)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.1 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, (idx, text) in enumerate(zip(indices, titles)):
        ax = axes.ravel()[k]
        ax.axis("on")
        _draw(ax, display_input(dataset, idx), None if overlays is None else np.asarray(overlays[k]),
              signal=getattr(dataset, "modality", "image") == "signal")
        ax.set_title(text, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def roc_pr_figure(curves, path):
    """``curves``: {name: (labels, scores)}; ROC and precision-recall side by side."""
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(8.5, 3.6))
    for name, (labels, scores) in curves.items():
        fpr, tpr = roc_curve_points(labels, scores)
        recall, precision = pr_curve_points(labels, scores)
        ax_roc.plot(fpr, tpr, label=name)
        ax_pr.step(np.r_[0, recall], np.r_[precision[0] if len(precision) else 1, precision], where="pre", label=name)
    ax_roc.plot([0, 1], [0, 1], ls=":", color="grey")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    ax_roc.legend(fontsize=7)
    ax_pr.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def annotation_curve_figure(inspected, found, random_found, n_positive, path, title=None):
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(inspected, found, label="CAV-guided")
    ax.plot(inspected, random_found, ls="--", label="random order (expected)")
    ax.axhline(n_positive, color="grey", ls=":", label=f"all {n_positive} artifact samples")
    ax.plot(inspected, np.minimum(inspected, n_positive), color="grey", lw=0.7, label="ideal")
    ax.set(xlabel="samples inspected", ylabel="artifact samples found", title=title or "Iterative annotation")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
