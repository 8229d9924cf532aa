"""Clustering methods for SpRAy, in a registry: ``@register_clustering`` + :func:`run_clusterings`.

A method receives the spectral embedding and the config and yields ``(name, labels)`` pairs
(several for methods swept over a cluster count); label ``-1`` means noise.
"""
import numpy as np
from sklearn.cluster import DBSCAN, HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.neighbors import NearestNeighbors

from utils.registry import Registry

CLUSTERINGS = Registry("clustering")
register_clustering = CLUSTERINGS.register


def list_clusterings():
    return CLUSTERINGS.names()


def run_clusterings(embedding, names, config):
    """``{clustering name: labels}`` for every method in ``names``."""
    result = {}
    for name in names:
        result.update(CLUSTERINGS.get(name)(embedding, config))
    return result


def _counts(config, n):
    return [k for k in config.spray_n_clusters if 1 < k < n]


@register_clustering("kmeans")
def _kmeans(embedding, config):
    return {f"kmeans_{k}": KMeans(k, n_init=10, random_state=config.seed).fit_predict(embedding)
            for k in _counts(config, len(embedding))}


@register_clustering("agglomerative")
def _agglomerative(embedding, config):
    return {f"agglomerative_{k}": AgglomerativeClustering(k, linkage="ward").fit_predict(embedding)
            for k in _counts(config, len(embedding))}


@register_clustering("dbscan")
def _dbscan(embedding, config):
    # eps from the data: the median distance to the min_samples-th neighbour, so the method needs no
    # scale the user cannot know in advance
    k = min(config.spray_min_cluster_size, len(embedding) - 1)
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(embedding).kneighbors(embedding)
    eps = float(np.median(distances[:, -1])) or 1e-6
    return {"dbscan": DBSCAN(eps=eps, min_samples=k).fit_predict(embedding)}


@register_clustering("hdbscan")
def _hdbscan(embedding, config):
    size = max(2, min(config.spray_min_cluster_size, len(embedding) - 1))
    return {"hdbscan": HDBSCAN(min_cluster_size=size, copy=True).fit_predict(embedding)}
