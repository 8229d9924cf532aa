"""Embeddings shared by the reveal methods: SpRAy's spectral embedding and 2-D views.

2-D views are a registry (``tsne``, ``mds``); each takes either feature vectors or, with
``precomputed=True``, a square distance matrix.
"""
import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.csgraph
import scipy.sparse.linalg
from sklearn.manifold import MDS, TSNE
from sklearn.neighbors import kneighbors_graph

from utils.registry import Registry

EMBEDDINGS = Registry("2-D embedding")
register_embedding = EMBEDDINGS.register


def list_embeddings():
    return EMBEDDINGS.names()


def embed_2d(data, method="tsne", precomputed=False, seed=0):
    """A 2-D view (n, 2) of ``data`` (features, or distances if ``precomputed``)."""
    if len(data) < 3:
        return np.zeros((len(data), 2))
    return np.asarray(EMBEDDINGS.get(method)(np.asarray(data, dtype=np.float64), precomputed, seed))


@register_embedding("tsne")
def _tsne(data, precomputed, seed):
    perplexity = float(min(30.0, max(1.0, (len(data) - 1) / 3)))
    kwargs = {"metric": "precomputed", "init": "random"} if precomputed else {"init": "pca"}
    return TSNE(2, perplexity=perplexity, random_state=seed, **kwargs).fit_transform(data)


@register_embedding("mds")
def _mds(data, precomputed, seed):
    kwargs = {"dissimilarity": "precomputed"} if precomputed else {}
    return MDS(2, random_state=seed, n_init=1, normalized_stress="auto", **kwargs).fit_transform(data)


def knn_affinity(features, k=32):
    """Binary Euclidean kNN graph, symmetrised (i~j if either is among the other's k nearest)."""
    k = min(k, len(features) - 1)
    graph = kneighbors_graph(features, k, mode="connectivity", include_self=False)
    return graph.maximum(graph.T).tocsr()


def spectral_embedding(affinity, n_eigval=32):
    """Rows of the eigenvectors of the ``n_eigval`` smallest eigenvalues of the normalised Laplacian.

    Also returns the eigenvalues (their gaps hint at the number of clusters).
    """
    n = affinity.shape[0]
    n_eigval = min(n_eigval, n - 1)
    laplacian = scipy.sparse.csgraph.laplacian(affinity.astype(np.float64), normed=True)
    if n <= 3000:  # dense is exact and fast enough at this size
        values, vectors = scipy.linalg.eigh(laplacian.toarray(), subset_by_index=[0, n_eigval - 1])
    else:
        values, vectors = scipy.sparse.linalg.eigsh(laplacian, k=n_eigval, sigma=-1e-3, which="LM")
        order = np.argsort(values)
        values, vectors = values[order], vectors[:, order]
    # eigenvector signs are arbitrary; fix them so results are deterministic across platforms
    signs = np.sign(vectors[np.abs(vectors).argmax(0), np.arange(vectors.shape[1])])
    return vectors * signs, values
