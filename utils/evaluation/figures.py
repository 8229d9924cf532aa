"""Figures of the re-evaluation: original vs corrected heatmaps and their difference."""
import numpy as np

from utils.plots import plt, save_figure


def heatmap_comparison(images, maps, titles, path, suptitle=""):
    """One row per sample: image, one heatmap per model, corrected - original.

    Each row shares one symmetric colour scale across its heatmaps (and the difference), so a
    region that loses relevance after the correction looks weaker, not just re-normalised.
    """
    names = list(maps)
    columns = 1 + len(names) + (1 if len(names) == 2 else 0)
    fig, axes = plt.subplots(len(images), columns, figsize=(2.2 * columns, 2.2 * len(images)), squeeze=False)
    for row, image in enumerate(images):
        hms = [maps[name][row].numpy() for name in names]
        panels = list(zip(names, hms))
        if len(hms) == 2:
            panels.append(("difference", hms[1] - hms[0]))
        scale = max(float(np.abs(h).max()) for _, h in panels) or 1.0
        signal = image.ndim == 2  # (leads, T): traces, and relevance as a lead x time map
        if signal:
            _plot_traces(axes[row, 0], image)
        else:
            axes[row, 0].imshow(np.clip(image, 0, 1))
        axes[row, 0].set_title(titles[row], fontsize=7)
        for col, (name, hm) in enumerate(panels, start=1):
            axes[row, col].imshow(hm, cmap="bwr", vmin=-scale, vmax=scale, aspect="auto" if signal else None,
                                  interpolation="nearest")
            if row == 0:
                axes[row, col].set_title(name, fontsize=8)
        for ax in axes[row]:
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_traces(ax, signal):
    """The leads of a (leads, T) signal stacked from top to bottom, each scaled to its own range."""
    span = np.ptp(signal, axis=1, keepdims=True)
    scaled = (signal - signal.min(axis=1, keepdims=True)) / np.where(span > 0, span, 1.0)
    for lead, trace in enumerate(scaled):
        ax.plot(trace * 0.8 + (len(scaled) - 1 - lead), color="black", linewidth=0.4)
    ax.set_xlim(0, signal.shape[1] - 1)
