"""Synthetic preprocessing stores with a planted artifact direction.

Lets the bias-modelling steps be tried and tested without a trained model or a preprocessing
run: the features of every layer are Gaussian noise plus ``strength`` times a fixed unit direction
for the samples that carry the artifact (by the data set's ground truth).
"""
import numpy as np

from utils.feature_store import FEATURE_KINDS, StoreWriter, store_path


def write_synthetic_stores(config, splits, artifact, layers, n_channels=16, strength=3.0, seed=0,
                           split_names=("train", "val", "test")):
    """Write a complete store for each split; returns the planted unit direction of each layer.

    ``n_channels``: one channel count for every layer, or ``{layer: channels}``.
    """
    rng = np.random.default_rng(seed)
    channels = n_channels if isinstance(n_channels, dict) else {layer: n_channels for layer in layers}
    directions = {}
    for layer in layers:
        direction = rng.normal(size=channels[layer])
        directions[layer] = direction / np.linalg.norm(direction)
    for split in split_names:
        dataset = splits.get(split)
        labels = dataset.artifact_labels(artifact)
        n = len(dataset)
        writer = StoreWriter(store_path(config, split), n,
                             {"model_name": config.model_name, "dataset_name": config.dataset_name,
                              "split": split, "layer_names": list(layers), "relevance_target": "label"},
                             force=True)
        arrays = {"sample_index": np.arange(n), "sample_ids": np.array(dataset.sample_ids),
                  "labels": np.asarray(dataset.labels)}
        for layer in layers:
            for kind in FEATURE_KINDS:
                noise = rng.normal(size=(n, channels[layer]))
                planted = strength * np.outer(labels, directions[layer])
                arrays[f"layers/{layer}/{kind}"] = (1.0 + noise + planted).astype(np.float32)
        writer.append(arrays)
        writer.finish()
        writer.close()
    return directions
