"""Figures of the reveal step: a 2-D embedding with outliers marked, and grids of examples."""
import numpy as np

from utils.plots import plt, save_figure


def scatter_embedding(ax, view, labels=None, outliers=(), title=""):
    """Points coloured by cluster label (``-1`` = noise, grey), the given outliers circled in red."""
    view = np.asarray(view)
    labels = np.zeros(len(view), dtype=int) if labels is None else np.asarray(labels)
    for label in np.unique(labels):
        pick = labels == label
        colour = "lightgrey" if label == -1 else None
        ax.scatter(view[pick, 0], view[pick, 1], s=10, c=colour, label="noise" if label == -1 else f"cluster {label}")
    outliers = np.asarray(list(outliers), dtype=int)
    if len(outliers):
        ax.scatter(view[outliers, 0], view[outliers, 1], s=60, facecolors="none", edgecolors="red",
                   linewidths=1.2, label="outliers")
    ax.set(title=title, xticks=[], yticks=[])
    if len(np.unique(labels)) <= 12:
        ax.legend(fontsize=6, loc="best")


def show_image(ax, image, title=""):
    """(C, H, W) in [0, 1] as an image, or (C, T) as curves."""
    image = np.asarray(image)
    if image.ndim == 2:
        for channel in image:
            ax.plot(channel, lw=0.6)
    else:
        ax.imshow(np.clip(image.transpose(1, 2, 0), 0, 1))
        ax.set(xticks=[], yticks=[])
    ax.set_title(title, fontsize=6)


def show_heatmap(ax, heatmap, title=""):
    heatmap = np.asarray(heatmap)
    if heatmap.ndim == 1:
        ax.plot(heatmap, lw=0.6)
    else:
        bound = float(np.abs(heatmap).max()) or 1.0
        ax.imshow(heatmap, cmap="bwr", vmin=-bound, vmax=bound)
        ax.set(xticks=[], yticks=[])
    ax.set_title(title, fontsize=6)


def embedding_with_grid(path, view, labels, outliers, panels, title, n_rows_per_item=2):
    """Left: the embedding; right: one column per outlier with ``n_rows_per_item`` panels each.

    ``panels`` is a list (one per outlier) of lists of callables ``draw(ax)``.
    """
    n_cols = max(1, len(panels))
    fig = plt.figure(figsize=(4 + 1.3 * n_cols, 3.6))
    grid = fig.add_gridspec(n_rows_per_item, n_cols + 3)
    scatter_embedding(fig.add_subplot(grid[:, :3]), view, labels, outliers, title)
    for col, draws in enumerate(panels):
        for row, draw in enumerate(draws[:n_rows_per_item]):
            draw(fig.add_subplot(grid[row, col + 3]))
    fig.tight_layout()
    return save_figure(fig, path)
