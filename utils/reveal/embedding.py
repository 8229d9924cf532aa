"""Embeddings shared by the reveal methods: SpRAy's spectral embedding and 2-D views.

2-D views are a registry (``tsne``, ``mds``); each takes either feature vectors or, with
``precomputed=True``, a square distance matrix. Above ``max_samples`` points a view is fitted on
a seeded sample and the other points are placed among their nearest sampled neighbours
(:mod:`utils.reveal.subsample`): the view is a picture for a person, and t-SNE costs seconds per
thousand points (MDS O(n^2) memory), which would otherwise dominate the reveal of a large class.
"""
import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.csgraph
import scipy.sparse.linalg
from sklearn.manifold import MDS, TSNE
from sklearn.neighbors import kneighbors_graph

from utils.registry import Registry
from utils.reveal.subsample import nearest_rows, one_thread, sample_rows

EMBEDDINGS = Registry("2-D embedding")
register_embedding = EMBEDDINGS.register

# dense eigh is exact and takes under a second up to here; its O(n^3) time and O(n^2) memory
# make it the slowest part of SpRAy above (3 s at 3,000 samples, minutes at 10,000)
DENSE_EIGEN_MAX = 2000
# sampled points whose positions are averaged to place a point the 2-D view was not fitted on
VIEW_NEIGHBOURS = 5
# the kNN graph of wider features is built on their first principal components (see knn_affinity)
KNN_MAX_DIM = 64


def list_embeddings():
    return EMBEDDINGS.names()


def embed_2d(data, method="tsne", precomputed=False, seed=0, max_samples=None):
    """A 2-D view (n, 2) of ``data`` (features, or distances if ``precomputed``).

    ``max_samples``: with more points, the view is fitted on a seeded sample of that many and every
    other point is put at the inverse-distance weighted mean position of its nearest sampled points.
    """
    if len(data) < 3:
        return np.zeros((len(data), 2))
    data = np.asarray(data, dtype=np.float64)
    fit = EMBEDDINGS.get(method)
    with one_thread():  # t-SNE's iterations are short: threads mostly wait for each other
        if max_samples is None or len(data) <= max_samples:
            return np.asarray(fit(data, precomputed, seed))
        rows = sample_rows(len(data), max_samples, seed)
        sample = data[np.ix_(rows, rows)] if precomputed else data[rows]
        return place_by_neighbours(data, rows, np.asarray(fit(sample, precomputed, seed)), precomputed)


def place_by_neighbours(data, rows, sample_view, precomputed=False, k=VIEW_NEIGHBOURS):
    """Positions of all points: the sampled ``rows`` keep ``sample_view``; every other point gets the
    inverse-distance weighted mean of its ``k`` nearest sampled points' positions."""
    distances, positions = nearest_rows(data, rows, k, precomputed)
    weights = 1.0 / np.maximum(distances, 1e-12)
    weights /= weights.sum(1, keepdims=True)
    view = np.einsum("nk,nkd->nd", weights, sample_view[positions])
    view[rows] = sample_view
    return view


@register_embedding("tsne")
def _tsne(data, precomputed, seed):
    perplexity = float(min(30.0, max(1.0, (len(data) - 1) / 3)))
    kwargs = {"metric": "precomputed", "init": "random"} if precomputed else {"init": "pca"}
    return TSNE(2, perplexity=perplexity, random_state=seed, **kwargs).fit_transform(data)


@register_embedding("mds")
def _mds(data, precomputed, seed):
    kwargs = {"dissimilarity": "precomputed"} if precomputed else {}
    return MDS(2, random_state=seed, n_init=1, normalized_stress="auto", **kwargs).fit_transform(data)


def knn_affinity(features, k=32, max_dim=None, seed=0):
    """Binary Euclidean kNN graph, symmetrised (i~j if either is among the other's k nearest).

    ``max_dim``: features with more columns are first projected on their ``max_dim`` leading principal
    components (randomized PCA, O(n d max_dim)): the neighbour search then costs O(n^2 max_dim)
    instead of O(n^2 d), e.g. 64 instead of 1,024 or 4,096 columns for input heatmaps. Principal
    components keep the directions of largest variance, so distances, and neighbours, change little.
    """
    k = min(k, len(features) - 1)
    if max_dim is not None and features.shape[1] > max_dim and len(features) > max_dim:
        features = leading_components(features, max_dim, seed)
    graph = kneighbors_graph(features, k, mode="connectivity", include_self=False)
    return graph.maximum(graph.T).tocsr()


def leading_components(features, n_components, seed=0):
    """Coordinates (n, n_components) of the rows on their leading principal components."""
    from sklearn.decomposition import PCA

    return PCA(n_components, svd_solver="randomized", random_state=seed).fit_transform(features)


def spectral_embedding(affinity, n_eigval=32, seed=0):
    """Rows of the eigenvectors of the ``n_eigval`` smallest eigenvalues of the normalised Laplacian.

    Also returns the eigenvalues (their gaps hint at the number of clusters). Up to
    ``DENSE_EIGEN_MAX`` nodes a dense solver; above, Lanczos iterations (ARPACK) on the normalised
    adjacency ``S = I - L``, whose largest eigenvalues are the Laplacian's smallest: only sparse
    products with the graph, O(nnz) each, where shift-invert needs a sparse factorisation whose
    fill-in grows about quadratically with the graph's size.
    """
    n = affinity.shape[0]
    n_eigval = min(n_eigval, n - 1)
    laplacian = scipy.sparse.csgraph.laplacian(affinity.astype(np.float64), normed=True)
    if n <= DENSE_EIGEN_MAX:
        values, vectors = scipy.linalg.eigh(laplacian.toarray(), subset_by_index=[0, n_eigval - 1])
    else:
        adjacency = (scipy.sparse.identity(n, format="csr") - laplacian).tocsr()
        start = np.random.default_rng(seed).standard_normal(n)  # ARPACK's own start is not seeded
        values, vectors = scipy.sparse.linalg.eigsh(adjacency, k=n_eigval, which="LA", v0=start)
        values = 1.0 - values
        order = np.argsort(values)
        values, vectors = values[order], vectors[:, order]
    # eigenvector signs are arbitrary; fix them so results are deterministic across platforms
    signs = np.sign(vectors[np.abs(vectors).argmax(0), np.arange(vectors.shape[1])])
    return vectors * signs, values
