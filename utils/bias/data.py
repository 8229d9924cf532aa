"""Features and artifact labels of a split, aligned by sample id.

The preprocessing store and the data set are two views of the same split; every function here
matches them by sample id (never by position), so a store written for a subset, or in another
order, cannot silently attach a label to the wrong features.
"""
from dataclasses import dataclass

import numpy as np

from utils.errors import UserError
from utils.feature_store import FeatureStore


@dataclass
class SplitFeatures:
    split: str
    sample_ids: list
    features: np.ndarray  # (N, C)
    indices: np.ndarray  # (N,) position of each sample in the data set split


def load_split_features(config, dataset, split, layer, kind) -> SplitFeatures:
    """Features ``kind`` of ``layer`` for every sample of ``split`` in the preprocessing store."""
    with FeatureStore.for_config(config, split) as store:
        features = np.asarray(store.features(layer, kind), dtype=np.float64)
        ids = store.sample_ids
    return SplitFeatures(split, ids, features, positions(dataset, ids, f"preprocessing store of split '{split}'"))


def positions(dataset, sample_ids, where="the input") -> np.ndarray:
    """Position of each sample id in ``dataset``; unknown ids are a :class:`UserError`."""
    index = {sid: i for i, sid in enumerate(dataset.sample_ids)}
    missing = [sid for sid in sample_ids if sid not in index]
    if missing:
        raise UserError(f"{len(missing)} sample ids of {where} are not in split '{dataset.split}' "
                        f"(first: {missing[0]}); was it written for another data set config?")
    return np.array([index[sid] for sid in sample_ids], dtype=np.int64)


def ground_truth_labels(dataset, artifact, indices=None,
                        hint="set cav_labels: annotations and annotate with experiments.sample_retrieval.refine"
                        ) -> np.ndarray:
    """Which samples carry ``artifact`` by the data set's ground truth; ``hint``: what to do without one."""
    if artifact not in dataset.artifact_names:
        raise UserError(f"data set split '{dataset.split}' has no ground truth for artifact '{artifact}' "
                        f"(annotated: {', '.join(dataset.artifact_names) or 'none'}); {hint}")
    labels = np.asarray(dataset.artifact_labels(artifact), dtype=bool)
    return labels if indices is None else labels[indices]


def has_ground_truth(dataset, artifact) -> bool:
    return artifact in dataset.artifact_names


def labels_from_ids(sample_ids, positive_ids) -> np.ndarray:
    positive = set(positive_ids)
    return np.array([sid in positive for sid in sample_ids], dtype=bool)
