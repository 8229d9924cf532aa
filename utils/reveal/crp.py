"""CRP relevance patterns: neurons whose relevance across a class's samples is unusual.

From ``rels_max`` (N x C) of one class: neurons that never receive positive relevance are
dropped; the cosine similarity between neurons' relevance vectors across samples gives the
distance ``1 - sim`` (clamped at 0), embedded in 2-D and ranked with LOF. A shortcut neuron
(relevant only on the band-aid samples) has a relevance pattern unlike the others.

Reference samples per neuron follow CRP's RelMax: the class's samples with the highest
``rels_max`` of that neuron, optionally cropped to the region where the neuron's
concept-conditional heatmap (``conditions={layer: [channel]}``) is relevant.
"""
from dataclasses import dataclass

import numpy as np
import torch

from models import layer_for_config
from utils.errors import UserError
from utils.reveal.embedding import embed_2d
from utils.reveal.outliers import cosine_distance_matrix, lof, ranking
from utils.reveal.results import ranked_neurons, write_result
from utils.reveal.store_views import class_mask, open_store
from utils.reveal.subsample import one_thread, top_rows


@dataclass
class CrpResult:
    layer: str
    channels: np.ndarray
    view_2d: np.ndarray
    scores: np.ndarray
    flags: np.ndarray

    def payload(self, config):
        order = ranking(self.scores)
        return {"split": config.reveal_split, "layer": self.layer, "feature": "rels_max",
                "channels": self.channels.tolist(), "embedding_2d": self.view_2d.tolist(),
                "outlier_neurons": ranked_neurons(self.layer, self.channels, self.scores, self.flags, order)}


def relevance_pattern_outliers(rels_max, config):
    """``(active channels, 2-D view, LOF scores, flags)`` of the columns of ``rels_max`` (N x C)."""
    rels_max = np.asarray(rels_max, dtype=np.float64)
    active = np.flatnonzero(rels_max.max(0) > 1e-12)
    if len(active) < 3:
        raise UserError(f"only {len(active)} neurons receive relevance in this class; CRP needs at least 3")
    with one_thread():  # a few hundred neurons: threads would only wait for each other
        distance = cosine_distance_matrix(rels_max[:, active].T)
        view = embed_2d(distance, config.embedding_2d, precomputed=True, seed=config.seed)
        scores, flags = lof(distance, config.lof_n_neighbors, precomputed=True)
    return active, view, scores, flags


def run_crp(config, class_id):
    """CRP relevance-pattern outliers of class ``class_id``; writes ``crp_class<k>.json``."""
    layer = layer_for_config(config, "neuron_layer_name")
    with open_store(config) as store:
        mask = class_mask(store.array("labels"), class_id)
        rels = store.features(layer, "rels_max")[mask]
    result = CrpResult(layer, *relevance_pattern_outliers(rels, config))
    return result, write_result(config, "crp", class_id, result.payload(config))


# --- RelMax reference samples ------------------------------------------------------------------
def relmax_references(rels_max, n_refs):
    """Per channel, the rows with the highest ``rels_max`` (best first), zero-relevance rows skipped."""
    order = top_rows(rels_max, n_refs)  # = a stable argsort's first n_refs rows, in linear time
    return {c: [int(r) for r in order[:, c] if rels_max[r, c] > 0] for c in range(rels_max.shape[1])}


def crop_box(heatmap, fraction=0.1):
    """Bounding box ``[y0, y1, x0, x1]`` (or ``[t0, t1]`` for signals) of the positive relevance
    above ``fraction`` of its maximum; the whole extent when there is none."""
    heatmap = np.asarray(heatmap)
    positive = np.clip(heatmap, 0, None)
    peak = positive.max() if positive.size else 0.0
    if peak <= 0:
        return [v for s in heatmap.shape for v in (0, s)]
    hits = np.nonzero(positive >= fraction * peak)
    return [v for axis in hits for v in (int(axis.min()), int(axis.max()) + 1)]


def conditional_heatmaps(attributor, inputs, class_id, layer, channels, batch=32):
    """Input heatmaps of class ``class_id`` flowing through ``layer``'s ``channels`` (one per input),
    summed over input channels."""
    out = []
    for start in range(0, len(inputs), batch):
        x = inputs[start:start + batch]
        chans = channels[start:start + batch]
        result = attributor.attribute(x, targets=torch.full((len(x),), class_id, dtype=torch.long),
                                      conditions=[{layer: [int(c)]} for c in chans])
        out.append(result.heatmap.sum(1).detach().float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def build_references(config, class_id, dataset, attributor, device="cpu", channels=None):
    """RelMax references of the configured layer for class ``class_id`` (all channels by default).

    Returns ``{channel: [{sample_id, sample_index, relevance, box}]}``; ``box`` is the crop (or
    the full extent when cropping is off).
    """
    layer = layer_for_config(config, "neuron_layer_name")
    with open_store(config) as store:
        mask = class_mask(store.array("labels"), class_id)
        rels = store.features(layer, "rels_max")[mask]
        index = store.array("sample_index")[mask]
        ids = np.asarray(store.sample_ids)[mask]
    refs = relmax_references(rels, config.crp_n_refs)
    channels = list(refs) if channels is None else [int(c) for c in channels]
    pairs = [(c, r) for c in channels for r in refs[c]]
    boxes = {}
    if config.crp_crop and pairs:
        augment, dataset.augment = dataset.augment, False
        try:
            inputs = torch.stack([dataset[int(index[r])][0] for _, r in pairs]).to(device)
        finally:
            dataset.augment = augment
        heatmaps = conditional_heatmaps(attributor, inputs, class_id, layer, [c for c, _ in pairs])
        boxes = {pair: crop_box(h.numpy(), config.crp_crop_fraction) for pair, h in zip(pairs, heatmaps)}
    full = None
    result = {}
    for c in channels:
        entries = []
        for r in refs[c]:
            if (c, r) not in boxes and full is None:
                full = [v for s in dataset.load_raw(0).shape[1:] for v in (0, int(s))]
            entries.append({"sample_id": str(ids[r]), "sample_index": int(index[r]),
                            "relevance": float(rels[r, c]), "box": boxes.get((c, r), full)})
        result[int(c)] = entries
    return layer, result


def references_path(config, class_id):
    from utils.paths import step_dir

    return step_dir(config, "preprocessing") / f"crp_refs_class{class_id}.json"
