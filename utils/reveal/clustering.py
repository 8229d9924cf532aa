"""Clustering methods for SpRAy, in a registry: ``@register_clustering`` + :func:`run_clusterings`.

A method receives the spectral embedding and the config and yields ``(name, labels)`` pairs
(several for methods swept over a cluster count); label ``-1`` means noise.

Cost in the number n of samples of the class: k-means is linear (each iteration compares every
point with k centres) and always sees every sample. Ward's linkage stores all n^2 / 2 pairwise
distances, HDBSCAN builds a minimum spanning tree over all pairs and DBSCAN's radius queries
compare all pairs in the embedding's 32 dimensions, so these three are fitted on a seeded sample
of ``spray_sample_size`` samples when the class has more, and each other sample joins the cluster
of its nearest sampled sample (noise if that one is noise); see :mod:`utils.reveal.subsample`.
HDBSCAN's ``spray_min_cluster_size`` then counts sampled samples: the smallest group it can find
holds about ``spray_min_cluster_size * n / spray_sample_size`` samples of the class.
"""
import functools

import numpy as np
from sklearn.cluster import DBSCAN, HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.neighbors import NearestNeighbors

from utils.registry import Registry
from utils.reveal.subsample import extend_labels, nearest_rows, sample_rows

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


def on_sample(method):
    """Run ``method(embedding, config)`` on a sample of at most ``config.spray_sample_size`` rows and
    give every other row the label of its nearest sampled row; unchanged at or below that size."""

    @functools.wraps(method)
    def run(embedding, config):
        if len(embedding) <= config.spray_sample_size:
            return method(embedding, config)
        rows = sample_rows(len(embedding), config.spray_sample_size, config.seed)
        labels = method(embedding[rows], config)
        _, positions = nearest_rows(embedding, rows)
        return {name: extend_labels(value, positions) for name, value in labels.items()}

    return run


@register_clustering("kmeans")
def _kmeans(embedding, config):
    return {f"kmeans_{k}": KMeans(k, n_init=10, random_state=config.seed).fit_predict(embedding)
            for k in _counts(config, len(embedding))}


@register_clustering("agglomerative")
@on_sample
def _agglomerative(embedding, config):
    return {f"agglomerative_{k}": AgglomerativeClustering(k, linkage="ward").fit_predict(embedding)
            for k in _counts(config, len(embedding))}


@register_clustering("dbscan")
@on_sample
def _dbscan(embedding, config):
    # eps from the data: the median distance to the min_samples-th neighbour, so the method needs no
    # scale the user cannot know in advance
    k = min(config.spray_min_cluster_size, len(embedding) - 1)
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(embedding).kneighbors(embedding)
    eps = float(np.median(distances[:, -1])) or 1e-6
    return {"dbscan": DBSCAN(eps=eps, min_samples=k).fit_predict(embedding)}


@register_clustering("hdbscan")
@on_sample
def _hdbscan(embedding, config):
    size = max(2, min(config.spray_min_cluster_size, len(embedding) - 1))
    return {"hdbscan": HDBSCAN(min_cluster_size=size, copy=True).fit_predict(embedding)}
