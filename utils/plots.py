"""Figures shared by several steps. Every function writes a PNG atomically and closes its figure."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from utils.io import atomic_path  # noqa: E402


def save_figure(fig, path, dpi=110):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def plot_training_curves(history, path):
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax_loss.plot(epochs, [row["train_loss"] for row in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Loss")
    for key, label in (("train_accuracy", "train"), ("val_accuracy", "validation")):
        points = [(row["epoch"], row[key]) for row in history if key in row]
        if points:
            ax_acc.plot(*zip(*points), marker="o", label=label)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    ax_acc.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_ecg(signal, path, relevance=None, lead_names=None, fs=100, title=None):
    """Twelve leads (``signal`` (C, T)) in a 6 x 2 grid; with ``relevance`` ((C, T) or (T,)) the
    trace is coloured by it (red positive, blue negative, one symmetric scale for all leads)."""
    import numpy as np
    from matplotlib.collections import LineCollection

    signal = np.asarray(signal, dtype=float)
    n_leads, n_samples = signal.shape
    lead_names = lead_names or [f"lead {i + 1}" for i in range(n_leads)]
    time = np.arange(n_samples) / fs
    if relevance is not None:
        relevance = np.broadcast_to(np.asarray(relevance, dtype=float), signal.shape)
        scale = float(np.abs(relevance).max()) or 1.0
        norm = matplotlib.colors.Normalize(-scale, scale)
    rows = (n_leads + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(12, 1.3 * rows), sharex=True, squeeze=False)
    for lead, ax in zip(range(n_leads), axes.T.ravel()):  # column-wise: limb leads left, chest leads right
        ax.plot(time, signal[lead], color="black", linewidth=0.7)
        if relevance is not None:
            points = np.stack([time, signal[lead]], axis=1)
            segments = np.stack([points[:-1], points[1:]], axis=1)
            # a segment takes the larger-magnitude relevance of its two ends, so single spikes show;
            # opacity grows with |relevance| so irrelevant stretches keep the plain black trace
            ends = relevance[lead, :-1], relevance[lead, 1:]
            value = np.where(np.abs(ends[0]) >= np.abs(ends[1]), *ends)
            colours = plt.get_cmap("bwr")(norm(value))
            colours[:, 3] = np.abs(value) / scale
            ax.add_collection(LineCollection(segments, colors=colours, linewidth=2.5))
        ax.set_ylabel(lead_names[lead], rotation=0, ha="right", va="center")
        ax.tick_params(labelsize=7)
    for ax in axes.T.ravel()[n_leads:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    if relevance is not None:
        fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap="bwr"), ax=axes, shrink=0.6, label="relevance")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
