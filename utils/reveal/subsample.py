"""Keeping the reveal methods near-linear in the number of samples of a class.

Some building blocks of SpRAy cost O(n^2) time or memory (Ward's linkage stores all pairwise
distances; HDBSCAN's minimum spanning tree and DBSCAN's radius queries compare all pairs in
the embedding's dimension; t-SNE and MDS cost seconds per thousand points even when they are
N log N). Above a size threshold (``spray_sample_size``) such a method is fitted on a seeded
random sample of the class, and every other sample takes the answer of its nearest sampled
neighbours: a label for a clustering (the inductive clustering scheme: fit on a sample, extend
to the rest by a nearest-neighbour rule), a position for a 2-D view. Distances from every point
to the m sampled points cost O(n m d) time, computed in chunks of bounded memory, so with m
fixed the whole is linear in n. At or below the threshold nothing is sampled and every method
sees all samples, exactly as before.
"""
import contextlib

import numpy as np
from sklearn.metrics import pairwise_distances_chunked
from threadpoolctl import threadpool_limits

# rows of the (n, m) distance block held at once when comparing points with a sample
_CHUNK_MIB = 64


def sample_rows(n, m, seed=0) -> np.ndarray:
    """``m`` distinct row indices of ``range(n)`` (sorted), drawn from ``seed``; all rows if ``n <= m``."""
    if n <= m:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, m, replace=False))


def nearest_rows(data, rows, k=1, precomputed=False):
    """``(distances, positions)`` (n, k) of the ``k`` nearest of the sampled ``rows`` for every row of
    ``data``, nearest first; ``positions`` index into ``rows``. A sampled row's nearest is itself.

    ``data``: feature vectors (Euclidean distances), or with ``precomputed`` a square distance
    matrix (only its ``rows`` columns are read).
    """
    data = np.asarray(data, dtype=np.float64)
    k = min(k, len(rows))
    if precomputed:
        chunks = (data[start:start + 4096][:, rows] for start in range(0, len(data), 4096))
    else:
        chunks = pairwise_distances_chunked(data, data[rows], working_memory=_CHUNK_MIB)
    distances, positions = [], []
    for block in chunks:
        nearest = np.argpartition(block, k - 1, axis=1)[:, :k]
        near = np.take_along_axis(block, nearest, axis=1)
        order = np.argsort(near, axis=1, kind="stable")
        positions.append(np.take_along_axis(nearest, order, axis=1))
        distances.append(np.take_along_axis(near, order, axis=1))
    distances, positions = np.concatenate(distances), np.concatenate(positions)
    # a sampled row is its own nearest even when another sampled row lies at distance 0
    positions[rows, 0], distances[rows, 0] = np.arange(len(rows)), 0.0
    return distances, positions


def extend_labels(labels_of_sample, positions):
    """Every row's label: that of its nearest sampled row (``positions`` from :func:`nearest_rows`)."""
    return np.asarray(labels_of_sample)[positions[:, 0]]


def top_rows(values, n) -> np.ndarray:
    """Per column, the rows of the ``n`` largest values, best first, ties by row order: exactly
    ``np.argsort(-values, axis=0, kind="stable")[:n]``, in O(N) per column instead of O(N log N)
    (a partition finds each column's n-th largest value; only the rows at or above it are sorted).
    """
    values = np.asarray(values)
    n_rows = len(values)
    n = min(n, n_rows)
    if n == 0 or 4 * n >= n_rows or np.isnan(values).any():  # small, or NaNs: the full sort is as cheap
        return np.argsort(-values, axis=0, kind="stable")[:n]
    kth = -np.partition(-values, n - 1, axis=0)[n - 1]  # each column's n-th largest value
    out = np.empty((n, values.shape[1]), dtype=np.int64)
    for column in range(values.shape[1]):
        candidates = np.flatnonzero(values[:, column] >= kth[column])  # increasing rows: ties stay in order
        out[:, column] = candidates[np.argsort(-values[candidates, column], kind="stable")[:n]]
    return out


@contextlib.contextmanager
def one_thread():
    """Run the enclosed numerics (BLAS, and scikit-learn's OpenMP loops) on one thread.

    The reveal of one class is hundreds of small operations (k-means restarts, t-SNE iterations on at
    most ``spray_sample_size`` points, eigenvectors, LOF): their threads spend more time waiting for
    each other than computing, and on a machine whose cores are shared with other jobs the spinning
    waits of OpenMP and OpenBLAS make them many times slower than one thread. The cores are used
    by analysing classes in parallel instead (``spray_workers``).
    """
    with threadpool_limits(limits=1):
        yield
