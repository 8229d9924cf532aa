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
