"""Views of the preprocessing store the reveal methods share: one class's rows and features."""
import numpy as np

from utils.errors import UserError
from utils.feature_store import FeatureStore


def open_store(config):
    return FeatureStore.for_config(config, config.reveal_split)


def class_mask(labels, class_id):
    """Rows of class ``class_id`` (single-label: equal label; multi-label: label set)."""
    labels = np.asarray(labels)
    n_classes = labels.shape[1] if labels.ndim == 2 else int(labels.max(initial=-1)) + 1
    if class_id is None:
        return np.ones(len(labels), dtype=bool)
    if not 0 <= class_id < max(n_classes, 1):
        raise UserError(f"--class_id {class_id} is out of range; classes: 0..{n_classes - 1}")
    mask = labels[:, class_id] > 0 if labels.ndim == 2 else labels == class_id
    if not mask.any():
        raise UserError(f"class {class_id} has no samples in this store")
    return mask


def parse_class_indices(text, n_classes):
    """'0,1' -> [0, 1]; empty/None -> every class."""
    if not text:
        return list(range(n_classes))
    try:
        indices = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--class_indices: comma-separated integers expected, got {text!r}") from None
    bad = [i for i in indices if not 0 <= i < n_classes]
    if bad:
        raise UserError(f"--class_indices: {bad} out of range 0..{n_classes - 1}")
    return indices


def n_classes_of(store):
    return int(store.file["outputs"].shape[1])
