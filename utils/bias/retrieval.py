"""Biased-sample retrieval: fit a CAV on the training split, rank held-out samples by it.

The CAV is fit on the **train** split and the ranking metrics are reported on held-out splits
(``retrieval_eval_splits``, default val and test): the published code scored the very samples it
was fit on, which overstates how well the direction generalises.

Two variants are scored: the configured features (``cav_mode``, by default ``cavs_max``:
``<max-pool(a_l(x)), v>``) and the relevance variant (``rel`` features), unless they coincide.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from utils.bias.annotation import annotation_path, read_annotations
from utils.bias.cav import fit_cav
from utils.bias.data import ground_truth_labels, has_ground_truth, labels_from_ids, load_split_features
from utils.bias.figures import roc_pr_figure, sample_grid
from utils.bias.ranking import ranking_metrics
from utils.errors import UserError
from utils.io import atomic_path, write_json


def training_labels(config, train_split, sample_ids, indices, artifact) -> np.ndarray:
    """Artifact labels of the training samples: ground truth or the annotation file."""
    if config.cav_labels == "ground_truth":
        return ground_truth_labels(train_split, artifact, indices)
    path = annotation_path(config)
    annotated = read_annotations(path).get(artifact)
    if not annotated:
        source = config._source_file or "<config file>"
        state = "lists no" if path.is_file() else "does not exist yet, so there is no"
        raise UserError(f"cav_labels: annotations, but the annotation file {path} {state} '{artifact}' sample: "
                        f"annotate with python -m experiments.sample_retrieval.refine --config_file {source} "
                        f"--artifact {artifact} (or set cav_labels: ground_truth for a controlled experiment)")
    return labels_from_ids(sample_ids, annotated)


def fit_train_cav(config, splits, layer, kind, artifact, cav_type=None, center_classes=None):
    """The CAV of ``artifact`` from the train split's ``kind`` features of ``layer``.

    ``center_classes`` (default: the config's ``cav_center_classes``) fits on features with each
    class's mean removed: when the artifact occurs in one class only, the plain class-mean
    difference also encodes the diagnosis, and the direction then points at the lesion too.
    """
    train = load_split_features(config, splits.train, "train", layer, kind)
    labels = training_labels(config, splits.train, train.sample_ids, train.indices, artifact)
    center = config.cav_center_classes if center_classes is None else center_classes
    features = center_by_class(train.features, splits.train.labels[train.indices]) if center else train.features
    return fit_cav(features, labels, cav_type or config.cav_type), train, labels


def center_by_class(features, class_labels):
    """Subtract from each sample the mean features of its class (multi-label: of its label set)."""
    class_labels = np.asarray(class_labels)
    keys = [tuple(np.atleast_1d(row)) for row in class_labels]
    centred = np.array(features, dtype=np.float64, copy=True)
    for key in set(keys):
        rows = np.array([k == key for k in keys])
        centred[rows] -= centred[rows].mean(0)
    return centred


def write_csv(path, frame: pd.DataFrame):
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def run_retrieval(config, splits, layer, artifact, out_dir) -> dict:
    """Fit, score, evaluate and plot; returns the metrics written to ``metrics.json``."""
    out_dir = Path(out_dir)
    kinds = list(dict.fromkeys([config.cav_mode, "rel"]))
    results = {"artifact": artifact, "layer": layer, "cav_type": config.cav_type, "cav_mode": config.cav_mode,
               "fit_split": "train", "label_source": config.cav_labels, "variants": {}}
    curves, top_scores = {}, None
    for kind in kinds:
        cav, train, train_labels = fit_train_cav(config, splits, layer, kind, artifact)
        write_json(out_dir / f"cav_{kind}.json", {"layer": layer, "features": kind, **cav.to_dict()})
        variant = {"n_train": len(train_labels), "n_train_artifact": int(train_labels.sum()),
                   "cav_info": cav.info, "splits": {}}
        frames = []
        for split in ["train"] + [s for s in config.retrieval_eval_splits if s != "train"]:
            data = train if split == "train" else load_split_features(config, splits.get(split), split, layer, kind)
            scores = cav.score(data.features)
            dataset = splits.get(split)
            labels = (ground_truth_labels(dataset, artifact, data.indices)
                      if has_ground_truth(dataset, artifact) else np.full(len(scores), np.nan))
            frames.append(pd.DataFrame({"split": split, "sample_id": data.sample_ids, "score": scores,
                                        "artifact": labels, "rank": _ranks(scores)}))
            if split == "train" or not has_ground_truth(dataset, artifact):
                continue  # metrics only on held-out samples with ground truth
            variant["splits"][split] = ranking_metrics(labels.astype(bool), scores)
            if kind == config.cav_mode or split == "test":
                curves[f"{kind} / {split}"] = (labels.astype(bool), scores)
            if kind == config.cav_mode and split == config.retrieval_eval_splits[-1]:
                top_scores = (split, data, scores, labels)
        write_csv(out_dir / f"scores_{kind}.csv", pd.concat(frames, ignore_index=True))
        results["variants"][kind] = variant
    write_json(out_dir / "metrics.json", results)
    if curves:
        roc_pr_figure(curves, out_dir / "roc_pr.png")
    if top_scores is not None:
        _top_grid(splits, top_scores, config.retrieval_top_k, out_dir / "top_ranked.png", artifact)
    return results


def _ranks(scores):
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return ranks


def _top_grid(splits, top_scores, k, path, artifact):
    split, data, scores, labels = top_scores
    best = np.argsort(-scores, kind="stable")[:k]
    titles = [f"#{r + 1} {data.sample_ids[i]}\n{scores[i]:.2f}" + ("" if np.isnan(labels[i]) else
                                                                  (" ✓" if labels[i] else " ✗"))
              for r, i in enumerate(best)]
    sample_grid(splits.get(split), data.indices[best], titles, path,
                title=f"top-ranked '{artifact}' samples ({split}); ✓ = ground truth artifact")


def results_rows(results) -> list:
    rows = []
    for kind, variant in results["variants"].items():
        for split, metrics in variant["splits"].items():
            rows.append({"features": kind, "split": split, "n": metrics["n"], "n_artifact": metrics["n_artifact"],
                         "AUROC": metrics["auroc"], "AP": metrics["ap"], "kendall_tau": metrics["kendall_tau"]})
    return rows
