"""Outlier scores shared by the reveal methods: Local Outlier Factor, ranked deterministically."""
import numpy as np
from sklearn.neighbors import LocalOutlierFactor


def lof(data, n_neighbors=20, precomputed=False):
    """LOF scores (higher = more outlying, about 1 for inliers) and the outlier flags of LOF.

    ``data`` holds feature vectors, or a square distance matrix if ``precomputed``.
    """
    n = len(data)
    if n < 3:
        return np.ones(n), np.zeros(n, dtype=bool)
    model = LocalOutlierFactor(n_neighbors=min(n_neighbors, n - 1), metric="precomputed" if precomputed else "minkowski")
    flags = model.fit_predict(np.asarray(data, dtype=np.float64)) == -1
    return -model.negative_outlier_factor_, flags


def ranking(scores):
    """Indices by decreasing score; ties keep their original order (stable, so reproducible)."""
    return np.argsort(-np.asarray(scores), kind="stable")


def cosine_distance_matrix(rows, half_angle=False):
    """Pairwise cosine distances of the rows, symmetric with a zero diagonal.

    ``half_angle``: DORA's ``sqrt((1 - cos) / 2)``; otherwise ``1 - cos`` (clamped at 0).
    """
    rows = np.asarray(rows, dtype=np.float64)
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    similarity = np.clip(unit @ unit.T, -1.0, 1.0)
    distance = np.sqrt((1.0 - similarity) / 2.0) if half_angle else np.clip(1.0 - similarity, 0.0, None)
    distance = (distance + distance.T) / 2  # rounding can make it slightly asymmetric
    np.fill_diagonal(distance, 0.0)
    return distance
