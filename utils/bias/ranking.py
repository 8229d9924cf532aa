"""Ranking metrics of a biased-sample retrieval: AUROC, average precision, Kendall tau.

AUROC and AP are computed here (tested against scikit-learn) so ties are handled in one
documented way: tied scores form one threshold, as in scikit-learn.
"""
import numpy as np
from scipy.stats import kendalltau, rankdata


def _check(labels, scores):
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.shape[0]} labels but {scores.shape[0]} scores")
    return labels, scores


def auroc(labels, scores) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties); NaN with one class."""
    labels, scores = _check(labels, scores)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(labels, scores) -> float:
    """Sum over distinct thresholds of (recall increase) x precision; NaN without positives."""
    labels, scores = _check(labels, scores)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    # the last position of each group of tied scores is where a threshold takes effect
    last_of_group = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
    tp = np.cumsum(labels)[last_of_group]
    precision = tp / (last_of_group + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def kendall_tau(labels, scores) -> float:
    """Kendall's tau-b between the scores and the binary labels."""
    labels, scores = _check(labels, scores)
    if labels.all() or not labels.any():
        return float("nan")
    return float(kendalltau(scores, labels.astype(float)).statistic)


def ranking_metrics(labels, scores) -> dict:
    labels, scores = _check(labels, scores)
    return {"n": int(len(labels)), "n_artifact": int(labels.sum()), "auroc": auroc(labels, scores),
            "ap": average_precision(labels, scores), "kendall_tau": kendall_tau(labels, scores)}


def roc_curve_points(labels, scores):
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0)."""
    labels, scores = _check(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
    tp, fp = np.cumsum(labels)[last], np.cumsum(~labels)[last]
    return np.r_[0.0, fp / max(fp[-1], 1)], np.r_[0.0, tp / max(tp[-1], 1)]


def pr_curve_points(labels, scores):
    """(recall, precision) at every distinct threshold."""
    labels, scores = _check(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
    tp = np.cumsum(labels)[last]
    return tp / max(labels.sum(), 1), tp / (last + 1)
