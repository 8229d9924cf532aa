"""Figures only the report needs (every step's own figures come from its library code)."""
import numpy as np

from utils.plots import plt, save_figure


def example_grid(split, path, n=8):
    """Samples of each artifact (and clean ones) with their class: what the data looks like."""
    rows = [("no artifact", np.flatnonzero(~np.any([split.artifact_labels(a) for a in split.artifact_names] or
                                                   [np.zeros(len(split), bool)], axis=0)))]
    rows += [(artifact, np.flatnonzero(split.artifact_labels(artifact))) for artifact in split.artifact_names]
    rows = [(name, idx[:n]) for name, idx in rows if len(idx)]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n, 1.8 * len(rows)), squeeze=False)
    for (name, indices), row in zip(rows, axes):
        for ax in row:
            ax.axis("off")
        for ax, idx in zip(row, indices):
            x = split.load_raw(int(idx))
            if x.dim() == 3:
                ax.imshow(x.permute(1, 2, 0).clamp(0, 1).numpy())
            else:  # signals: first lead
                ax.plot(x[0].numpy(), lw=0.6)
            ax.set_title(split.class_names[int(split.labels[idx])] if split.labels.ndim == 1 else "", fontsize=8)
        row[0].text(-0.15, 0.5, name, transform=row[0].transAxes, ha="right", va="center", fontsize=9)
    fig.suptitle(f"{split.split} split: examples per artifact")
    return save_figure(fig, path)
