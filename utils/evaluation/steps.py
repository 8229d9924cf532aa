"""The re-evaluation steps, original vs corrected model. Entry points in ``experiments/evaluation``
are thin wrappers; each function writes its JSON (and figure) into the evaluation folder of the
config and returns its results.
"""
import functools
import json

import numpy as np
import torch

from utils.bias.cav import CAV
from model_training.corrections.data import correction_splits
from models import get_model_spec, layer_for_config
from utils.config import save_resolved_config
from utils.device import resolve_device
from utils.evaluation.cache import cached_original, data_key
from utils.evaluation.compare import EVALUATED, EVALUATIONS, evaluated_models, stale_evaluations
from utils.evaluation.models import load_corrected, load_original, lrp_backend_for
from utils.evaluation.relevance import artifact_relevance, artifact_samples
from utils.evaluation.tcav import biased_class, directional_derivatives, refit_cav, tcav_scores
from utils.evaluation.stats import paired_tests
from utils.io import write_json
from utils.labels import explained_labels, label_batch, label_names
from utils.layout import channel_axis
from utils.locks import folder_lock
from utils.metrics import classification_metrics, predict_subsets
from utils.metrics import subset_rows
from utils.paths import step_dir


def evaluation_dir(config):
    out = step_dir(config, "evaluation")
    save_resolved_config(config, out)
    return out


def _locked(step):
    """Run an evaluation step holding its run's evaluation folder (one run per folder, :mod:`utils.locks`).

    Files of the folder computed from other models than the run's checkpoints now are removed first, and
    the models' identities are recorded after the step (``evaluated.json``), so an evaluation is never
    reused for a model it did not measure. ``data``: the :class:`SplitCache` of the comparison the step
    is part of (None: the step loads its data)."""

    @functools.wraps(step)
    def run(config, data=None):
        folder = step_dir(config, "evaluation")
        with folder_lock(folder):
            if stale_evaluations(config):
                for name in (*EVALUATIONS, EVALUATED):
                    (folder / name).unlink(missing_ok=True)
            result = step(config, data)
            write_json(folder / EVALUATED, evaluated_models(config))
            return result

    return run


class SplitCache:
    """The data of the configs evaluated together, owned by whoever evaluates several corrections of one
    model (:func:`utils.evaluation.runner.correct_and_evaluate`): the splits keep their rendered samples,
    so the comparison renders nothing twice. Holds one data set at a time; a step called without one
    loads its data afresh."""

    def __init__(self):
        self._key, self._splits = None, None

    def splits(self, config):
        key = json.dumps({**data_key(config), "data_paths": config.data_paths, "source_masks": config.source_masks,
                          "localization_dir": config.localization_dir}, sort_keys=True, default=str)
        if key != self._key:
            self._key, self._splits = key, correction_splits(config)
        return self._splits


def _setup(config, data):
    return resolve_device(config.device), (data or SplitCache()).splits(config)


# --- 1. accuracy by subset -----------------------------------------------------------------------
@_locked
def evaluate_by_subset(config, data=None):
    """Accuracy (± SE), macro-F1 and per-class AUROC on clean/attacked/ch of each eval split, and the
    paired tests of corrected vs original on the same samples (McNemar for accuracy, DeLong for the
    AUROC of the class the artifact is evidence for). Multi-label: accuracy over every label decision
    at 0.5 (``utils.metrics``); both paired tests are about the biased class's label alone
    (:func:`utils.evaluation.stats.paired_tests`)."""
    device, splits = _setup(config, data)

    def run(model):
        return {split: {mode: {"logits": logits.tolist(), "labels": labels.tolist()} for mode, (logits, labels)
                        in predict_subsets(model, splits.get(split), config.batch_size, device,
                                           config.num_workers).items()}
                for split in config.eval_splits}

    predictions = {"corrected": run(load_corrected(config, device))}
    if config.ckpt_path:
        predictions["original"] = cached_original(
            config, "predictions", {"splits": config.eval_splits, "seed": config.seed, "data": data_key(config, splits)},
            lambda: run(load_original(config, device)))
    names = splits.train.class_names
    results = {model: {split: {mode: classification_metrics(p["logits"], p["labels"], names) for mode, p in by_mode.items()}
                       for split, by_mode in by_split.items()} for model, by_split in predictions.items()}
    if "original" in predictions:
        auroc_class = names.index(biased_class(splits.train, config.artifact))
        results["paired_tests"] = {
            split: {mode: paired_tests(p["labels"], predictions["original"][split][mode]["logits"], p["logits"],
                                       auroc_class) for mode, p in by_mode.items()}
            for split, by_mode in predictions["corrected"].items()}
    write_json(evaluation_dir(config) / "subsets.json", results)
    return results


def original_and_corrected_rows(results):
    """The table of :func:`evaluate_by_subset`: original and corrected model, each split and subset."""
    return [row for model in ("original", "corrected") if model in results
            for row in subset_rows(results[model], model=model)]


def paired_rows(results):
    """Corrected vs original on the same samples, one row per split and subset."""
    rows = []
    for split, by_mode in results.get("paired_tests", {}).items():
        for subset, t in by_mode.items():
            # multi-label: the accuracy of one label (its class), not the subsets' accuracy over all labels
            accuracy = f"accuracy {t['accuracy']['class']}" if "class" in t["accuracy"] else "accuracy"
            rows.append({"split": split, "subset": subset, f"{accuracy} original": t["accuracy"]["a"],
                         f"{accuracy} corrected": t["accuracy"]["b"], "McNemar p": t["accuracy"]["p_value"],
                         f"AUROC {t['auroc']['class']} original": t["auroc"]["auc_a"],
                         f"AUROC {t['auroc']['class']} corrected": t["auroc"]["auc_b"], "DeLong p": t["auroc"]["p_value"]})
    return rows


# --- 2. artifact relevance -----------------------------------------------------------------------
@_locked
def compute_artifact_relevance(config, data=None):
    """Share of positive relevance (true label; multi-label: :mod:`utils.labels`) inside the dilated
    artifact mask, attacked test samples, and the share of the same region on the same samples without
    the artifact (the floor)."""
    device, splits = _setup(config, data)
    dataset, without = splits.test.with_mode("attacked"), splits.test.with_mode("clean")
    indices = artifact_samples(dataset, config.artifact, config.eval_max_samples)
    fallback = _fallback_class(splits, config)

    def run(model):
        return artifact_relevance(model, dataset, config.artifact, indices, config.batch_size, config.mask_dilation,
                                  lrp_backend_for(model, config.lrp_backend), device, without=without,
                                  fallback=fallback)

    results = {"corrected": run(load_corrected(config, device))}
    if config.ckpt_path:
        results["original"] = cached_original(
            config, "artifact_relevance", {"artifact": config.artifact, "n": len(indices), "dilation": config.mask_dilation,
                                           "without_artifact": "clean",
                                           "backend": config.lrp_backend, "data": data_key(config, splits)},
            lambda: run(load_original(config, device)))
    write_json(evaluation_dir(config) / "artifact_relevance.json", results)
    return results


def _fallback_class(splits, config):
    """Multi-label: the index of the class the artifact is evidence for in training, which a sample
    without a positive label is explained by (:mod:`utils.labels`); single-label: ``None``, not needed."""
    if not splits.train.multi_label:
        return None
    return splits.class_names.index(biased_class(splits.train, config.artifact))


# --- 3. TCAV -------------------------------------------------------------------------------------
@_locked
def measure_tcav(config, data=None):
    """TCAV of both models against the original model's CAV and against a CAV refit per model."""
    device, splits = _setup(config, data)
    layer = layer_for_config(config)
    axis = channel_axis(get_model_spec(config.model_name))
    train = splits.train
    labels = np.asarray(train.artifact_labels(config.artifact), dtype=bool)
    dataset = splits.test.with_mode("attacked")
    indices = artifact_samples(dataset, config.artifact, config.eval_max_samples)
    original, corrected = load_original(config, device), load_corrected(config, device)
    if original is not None:  # the original model's CAV is the same for every correction of it: cached
        settings = {"layer": layer, "cav_type": config.cav_type, "cav_mode": config.cav_mode, "scope": config.cav_scope,
                    "data": data_key(config)}
        if axis != 1:  # token CAVs cached before utils.layout were pooled over the hidden dimension: stale
            settings["channel_axis"] = axis
        cav_original = CAV.from_dict(cached_original(
            config, "cav", settings,
            lambda: refit_cav(original, train, labels, layer, config.cav_type, config.cav_mode, config.batch_size,
                              device, config.cav_scope, axis).to_dict()))
    else:
        cav_original = refit_cav(corrected, train, labels, layer, config.cav_type, config.cav_mode, config.batch_size,
                                 device, config.cav_scope, axis)

    def scores(model, cav):
        derivatives = directional_derivatives(model, dataset, indices, layer, cav.direction, config.batch_size, device,
                                              axis)
        return tcav_scores(derivatives, train.class_names)

    results = {"layer": layer, "biased_class": biased_class(train, config.artifact), "n": int(len(indices)),
               "corrected": {"original_cav": scores(corrected, cav_original)}}
    cav_refit = refit_cav(corrected, train, labels, layer, config.cav_type, config.cav_mode, config.batch_size, device,
                          config.cav_scope, axis)
    results["corrected"]["refit_cav"] = scores(corrected, cav_refit)
    results["cav_cosine_original_vs_refit"] = float(np.dot(cav_original.direction, cav_refit.direction))
    if original is not None:  # the same for every correction of the model: cached with its CAV
        results["original"] = {"original_cav": cached_original(
            config, "tcav_scores", {**settings, "n": int(len(indices)), "batch_size": config.batch_size},
            lambda: scores(original, cav_original))}
    write_json(evaluation_dir(config) / "tcav.json", results)
    return results


def tcav_rows(results):
    rows = []
    for model in ("original", "corrected"):
        for cav, per_class in results.get(model, {}).items():
            for cls, s in per_class.items():
                rows.append({"model": model, "cav": cav, "class": cls, "tcav": s["tcav"], "sensitivity": s["sensitivity"]})
    return rows


# --- 4. heatmaps -----------------------------------------------------------------------------------
@_locked
def plot_heatmaps(config, data=None):
    """Original vs corrected heatmaps (true label; multi-label: :mod:`utils.labels`) of attacked test
    samples, shared colour scale."""
    from utils.evaluation.figures import heatmap_comparison
    from utils.lrp.attribution import get_attributor

    device, splits = _setup(config, data)
    dataset = splits.test.with_mode("attacked")
    indices = artifact_samples(dataset, config.artifact, config.n_heatmaps)
    x = torch.stack([dataset.normalize(dataset.load_raw(int(i))) for i in indices]).to(device)
    y = explained_labels(label_batch(dataset, indices), _fallback_class(splits, config)).to(device)
    maps = {}
    for name, model in (("original", load_original(config, device)), ("corrected", load_corrected(config, device))):
        if model is not None:
            attributor = get_attributor(model, backend=lrp_backend_for(model, config.lrp_backend))
            heatmap = attributor.attribute(x, targets=y).heatmap.detach().cpu()
            # images: one map over the pixels; signals: one row per lead, as the artifact may sit in one
            maps[name] = heatmap if dataset.modality == "signal" else heatmap.sum(1)
    raw = [dataset.load_raw(int(i)) for i in indices]
    images = [r.numpy() if dataset.modality == "signal" else r.permute(1, 2, 0).numpy() for r in raw]
    titles = [f"{dataset.sample_ids[int(i)]} ({label_names(dataset.label(int(i)), dataset.class_names)})"
              for i in indices]
    path = evaluation_dir(config) / "heatmaps.png"
    heatmap_comparison(images, maps, titles, path, f"{config.method}: {config.config_name}")
    return path
