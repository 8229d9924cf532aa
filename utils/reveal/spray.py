"""SpRAy (Spectral Relevance Analysis): clusters and outliers among one class's explanations.

Per class: input heatmaps (or a layer's stored relevances) normalised to unit sum, a symmetrised
Euclidean kNN graph as affinity, a spectral embedding from the normalised Laplacian's first
eigenvectors, clusterings on it (registry in :mod:`utils.reveal.clustering`), a 2-D view and
Local Outlier Factor scores. Samples that explain the class in an unusual way (a shortcut)
form their own cluster or stand out as outliers.
"""
from dataclasses import dataclass

import numpy as np

from models import layer_for_config
from utils.reveal.clustering import run_clusterings
from utils.reveal.embedding import KNN_MAX_DIM, embed_2d, knn_affinity, spectral_embedding
from utils.reveal.outliers import lof, ranking
from utils.reveal.results import ranked_samples, write_result
from utils.reveal.store_views import class_mask, open_store
from utils.reveal.subsample import one_thread
from utils.registry import Registry


def _input_space(store, config):
    return store.array("heatmaps"), None


def _latent_space(store, config):
    layer = layer_for_config(config)
    return store.features(layer, config.spray_feature), layer


SPACES = Registry("spray space", {"input": _input_space, "latent": _latent_space})


def normalise_rows(features):
    """Each explanation flattened and scaled to unit (absolute) sum.

    We divide by the sum of absolute values rather than the signed sum: a heatmap whose relevance
    sums to about zero (or below, for a misclassified sample) would otherwise explode or flip.
    """
    flat = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    return flat / np.maximum(np.abs(flat).sum(1, keepdims=True), 1e-12)


@dataclass
class SprayResult:
    class_id: int
    sample_ids: list
    sample_index: np.ndarray
    embedding: np.ndarray  # spectral embedding (n, n_eigval)
    eigenvalues: np.ndarray
    clusterings: dict  # name -> labels (n,)
    view_2d: np.ndarray  # (n, 2)
    scores: np.ndarray  # LOF
    flags: np.ndarray
    layer: str | None

    def payload(self, config):
        order = ranking(self.scores)
        return {"split": config.reveal_split, "space": config.spray_space, "layer": self.layer,
                "feature": config.spray_feature if self.layer else "heatmaps",
                "sample_ids": list(self.sample_ids), "sample_index": self.sample_index.tolist(),
                "eigenvalues": self.eigenvalues.tolist(),
                "clusterings": {k: v.tolist() for k, v in self.clusterings.items()},
                "default_clustering": config.spray_default_clustering,
                "embedding_2d": self.view_2d.tolist(),
                "outlier_samples": ranked_samples(self.sample_ids, self.sample_index, self.scores, self.flags, order)}


def spray(features, config):
    """Spectral embedding, clusterings, 2-D view and LOF of (n, ...) explanations of one class
    (on one thread: see :func:`utils.reveal.subsample.one_thread`)."""
    with one_thread():
        return _spray(features, config)


def _spray(features, config):
    rows = normalise_rows(features)
    large = len(rows) > config.spray_sample_size  # at or below: every step exactly as on all samples
    affinity = knn_affinity(rows, config.spray_n_neighbors, max_dim=KNN_MAX_DIM if large else None,
                            seed=config.seed)
    embedding, eigenvalues = spectral_embedding(affinity, config.spray_n_eigval, seed=config.seed)
    # ours: with all n_eigval eigenvectors weighted equally, the many eigenvectors that describe
    # variation inside a cluster outvote the few that separate clusters (k-means then splits a
    # large group instead of isolating a small one); diffusion-map weights fix that
    embedding = embedding * np.clip(1.0 - eigenvalues, 0.0, None) ** config.spray_diffusion_time
    clusterings = run_clusterings(embedding, config.spray_clusterings, config)
    view = embed_2d(embedding, config.embedding_2d, seed=config.seed, max_samples=config.spray_sample_size)
    scores, flags = lof(embedding, config.lof_n_neighbors)
    return embedding, eigenvalues, clusterings, view, scores, flags


def run_spray(config, class_id):
    """SpRAy on the stored explanations of class ``class_id``; writes ``spray_class<k>.json``."""
    with open_store(config) as store:
        mask = class_mask(store.array("labels"), class_id)
        features, layer = SPACES[config.spray_space](store, config)
        ids = np.asarray(store.sample_ids)[mask]
        index = store.array("sample_index")[mask]
    features = features[mask]
    if len(features) < 4:
        from utils.errors import UserError

        raise UserError(f"class {class_id} has {len(features)} samples; SpRAy needs at least 4")
    result = SprayResult(class_id, ids.tolist(), index, *spray(features, config), layer=layer)
    path = write_result(config, "spray", class_id, result.payload(config))
    return result, path
