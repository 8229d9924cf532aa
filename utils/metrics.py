"""Classification metrics and model evaluation on a data set split.

AUROC and macro-F1 are computed here with numpy (the definitions of scikit-learn's ``roc_auc_score``
and ``f1_score(average="macro", zero_division=0)``, checked against them in the tests): every
training epoch and every evaluation subset calls them per class, and scikit-learn's argument
checks cost milliseconds per call, its import a second per process.
"""
import numpy as np
import torch
from tqdm import tqdm


@torch.no_grad()
def predict(model, dataset, batch_size=64, device="cpu", num_workers=0, desc=None):
    """Logits and labels of ``model`` on every sample of ``dataset`` (no augmentation)."""
    augment, dataset.augment = dataset.augment, False
    try:
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
        model.eval()
        logits, labels = [], []
        for x, y in tqdm(loader, desc=desc, leave=False, disable=desc is None):
            logits.append(model(x.to(device)).float().cpu())
            labels.append(torch.as_tensor(y))
    finally:
        dataset.augment = augment
    return torch.cat(logits), torch.cat(labels)


def classification_metrics(logits, labels, class_names=None):
    """Accuracy (with standard error), macro-F1, per-class accuracy, one-vs-rest AUROC and the
    majority-class rate (single-label only)."""
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    if labels.dim() == 2:  # multi-label: per-label accuracy at 0.5, AUROC per label
        probs = torch.sigmoid(logits).numpy()
        preds, y = probs > 0.5, labels.numpy().astype(bool)
        correct = (preds == y).astype(float).ravel()
        per_class_auroc = [auroc(y[:, k], probs[:, k]) for k in range(y.shape[1])]
        f1 = macro_f1(y, preds)
        per_class_acc = (preds == y).mean(0).tolist()
        majority_rate = float("nan")
    else:
        probs = torch.softmax(logits, 1).numpy()
        preds, y = probs.argmax(1), labels.numpy()
        correct = (preds == y).astype(float)
        n_classes = probs.shape[1]
        per_class_auroc = [auroc(y == k, probs[:, k]) for k in range(n_classes)]
        classes = np.arange(n_classes)
        f1 = macro_f1(y[:, None] == classes, preds[:, None] == classes)
        per_class_acc = [float(correct[y == k].mean()) if (y == k).any() else float("nan") for k in range(n_classes)]
        # what always predicting the most frequent class scores: the floor of a collapsed model
        majority_rate = float(np.bincount(y, minlength=n_classes).max() / len(y)) if len(y) else float("nan")
    n = len(correct)
    names = class_names or [str(k) for k in range(len(per_class_auroc))]
    return {
        "n": n,
        "accuracy": float(correct.mean()) if n else float("nan"),
        "accuracy_se": float(correct.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
        "macro_f1": float(f1),
        "majority_rate": majority_rate,
        "per_class_accuracy": dict(zip(names, per_class_acc)),
        "per_class_auroc": dict(zip(names, per_class_auroc)),
    }


def evaluate(model, dataset, batch_size=64, device="cpu", num_workers=0, desc=None):
    logits, labels = predict(model, dataset, batch_size, device, num_workers, desc)
    return classification_metrics(logits, labels, dataset.class_names)


def midranks(values):
    """Ranks 1..n of ``values``, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2)[inverse.ravel()]


def auroc(positive, scores):
    """Area under the ROC curve of ``scores`` for the boolean ``positive``: the probability that a positive
    scores above a negative, ties counting one half (Mann-Whitney U with midranks); NaN when only one
    class is present (undefined)."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = midranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_f1(truth, predicted):
    """Mean over classes (columns of the boolean ``(N, K)`` arrays) of F1 = 2 TP / (2 TP + FP + FN); a class
    neither present nor predicted scores 0."""
    truth, predicted = np.asarray(truth, dtype=bool), np.asarray(predicted, dtype=bool)
    tp = (truth & predicted).sum(0)
    wrong = (truth ^ predicted).sum(0)  # false positives and false negatives
    return float(np.mean(np.where(2 * tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0)))


SUBSETS = ("clean", "attacked", "ch")


def subset_views(dataset, subsets=SUBSETS):
    """``{mode: view}`` of the evaluation subsets (``clean``, ``attacked``, ``ch``) of an artifact split.

    The subsets exist when the split has a target artifact: an inserted one (``with_artifacts``)
    or an annotated one pasted from masked training samples (``pasted_artifacts``; there ``clean``
    holds the split's samples without the artifact). Without a target, or when no masked training
    sample could be pasted, only ``ch`` (the data as it is) is evaluated; an empty subset (every
    sample of the split carries the annotated artifact: no ``clean``) is left out.
    """
    if getattr(dataset, "target", None) is None:
        subsets = ("ch",)
    views = {mode: dataset.with_mode(mode) for mode in subsets}
    return {mode: view for mode, view in views.items() if len(view)}


def predict_subsets(model, dataset, batch_size=64, device="cpu", num_workers=0, subsets=SUBSETS):
    """``{mode: (logits, labels)}`` on the evaluation subsets (see :func:`subset_views`)."""
    return {mode: predict(model, view, batch_size, device, num_workers, desc=f"{dataset.split}/{mode}")
            for mode, view in subset_views(dataset, subsets).items()}


def evaluate_subsets(model, dataset, batch_size=64, device="cpu", num_workers=0, subsets=SUBSETS):
    """Metrics on the evaluation subsets (see :func:`subset_views`)."""
    return {mode: classification_metrics(logits, labels, dataset.class_names)
            for mode, (logits, labels) in predict_subsets(model, dataset, batch_size, device, num_workers,
                                                          subsets).items()}


def subset_rows(metrics_by_split, auroc_columns=True, **leading):
    """Result-table rows, one per (split, subset) of ``{split: {subset: classification_metrics}}``: n,
    accuracy with its standard error, macro-F1 and (``auroc_columns``) the per-class AUROCs; ``leading``
    columns (e.g. ``model="corrected"``) come first in every row."""
    return [{**leading, "split": split, "subset": subset, "n": m["n"], "accuracy": m["accuracy"],
             "± se": m["accuracy_se"], "macro_f1": m["macro_f1"],
             **({f"auroc {k}": v for k, v in m["per_class_auroc"].items()} if auroc_columns else {})}
            for split, subsets in metrics_by_split.items() for subset, m in subsets.items()]
