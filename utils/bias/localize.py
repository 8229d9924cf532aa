"""The localization step and its quantitative evaluation (used by ``experiments.localization``)."""
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models import get_model_for_config, get_model_spec
from utils.bias.annotation import annotation_path, read_annotations
from utils.bias.data import ground_truth_labels, has_ground_truth, positions
from utils.bias.figures import no_augmentation, sample_grid
from utils.bias.localization import (MASK_SUFFIX, artifact_relevance, cav_heatmaps, heatmap_masks, iou,
                                     is_safe_id, load_index, projection_quantile, read_mask, write_heatmap,
                                     write_mask)
from utils.bias.retrieval import fit_train_cav
from utils.device import resolve_device
from utils.errors import UserError
from utils.io import write_json
from utils.layout import channel_axis
from utils.lrp.attribution import get_attributor


def _sample_ground_truth(dataset, artifact):
    return np.flatnonzero(ground_truth_labels(dataset, artifact, hint="set localization_samples: all"))


def _sample_annotations(dataset, artifact, config):
    ids = read_annotations(annotation_path(config)).get(artifact, [])
    if not ids:
        raise UserError(f"localization_samples is 'annotations' but {annotation_path(config)} lists no "
                        f"'{artifact}' samples")
    return positions(dataset, ids, "the annotation file")


SAMPLE_SELECTORS = {
    "ground_truth": lambda dataset, artifact, config: _sample_ground_truth(dataset, artifact),
    "annotations": _sample_annotations,
    "all": lambda dataset, artifact, config: np.arange(len(dataset)),
}


def select_samples(config, dataset, artifact) -> np.ndarray:
    indices = np.asarray(SAMPLE_SELECTORS[config.localization_samples](dataset, artifact, config), dtype=np.int64)
    if config.max_localization_samples:
        indices = indices[:config.max_localization_samples]
    if len(indices) == 0:
        raise UserError(f"no '{artifact}' samples to localize in split '{dataset.split}'")
    return indices


def load_model(config, splits, device):
    if not config.ckpt_path:
        warnings.warn("no ckpt_path in the config: localizing with an untrained model", stacklevel=2)
    x, _ = splits.train[0]
    return get_model_for_config(config, splits.n_classes, in_channels=x.shape[0]).to(device).eval()


def gate_threshold(config, splits, attributor, layer, direction, train, labels, axis, device) -> float:
    """Threshold of the gated initial-relevance rules: 0, or calibrated on the artifact-free training
    samples the CAV was fit on (``localization_gate_quantile``, see ``projection_quantile``)."""
    if config.localization_gate_quantile is None or config.localization_init == "channelwise":
        return 0.0
    negatives = train.indices[~np.asarray(labels, dtype=bool)][:config.localization_gate_samples]
    with no_augmentation(splits.train):
        batches = (torch.stack([splits.train[int(i)][0] for i in negatives[s:s + config.batch_size]]).to(device)
                   for s in range(0, len(negatives), config.batch_size))
        return projection_quantile(attributor, batches, layer, direction, config.localization_gate_quantile, axis)


def mask_options(config) -> dict:
    """Keyword arguments of ``heatmap_masks`` from the config's ``mask_*`` keys."""
    return {"threshold": config.mask_threshold, "kernel_224": config.mask_blur_kernel,
            "sigma_224": config.mask_blur_sigma, "power": config.mask_power, "closing_224": config.mask_closing,
            "fill_holes": config.mask_fill_holes, "components": config.mask_components,
            "percentile": config.mask_percentile, "relative": config.mask_relative}


def localize(config, splits, layer, artifact, out_dir, progress=True) -> dict:
    """Fit the train CAV, write heatmaps, masks and ``index.json`` for the selected samples."""
    out_dir = Path(out_dir)
    device = resolve_device(config.device)
    cav, train, labels = fit_train_cav(config, splits, layer, config.cav_mode, artifact,
                                       cav_type=config.localization_cav_type or config.cav_type)
    model = load_model(config, splits, device)
    spec = get_model_spec(config.model_name)
    attributor = get_attributor(model, backend=config.lrp_backend, composite=config.localization_composite)
    axis = channel_axis(spec)
    threshold = gate_threshold(config, splits, attributor, layer, cav.direction, train, labels, axis, device)
    write_json(out_dir / "cav.json", {"layer": layer, "features": config.cav_mode, **cav.to_dict(),
                                      "gate_threshold": threshold})
    dataset = splits.get(config.localization_split)
    indices = select_samples(config, dataset, artifact)
    suffix = MASK_SUFFIX.get(getattr(dataset, "modality", "image"), ".npy")
    samples = {}
    with no_augmentation(dataset):
        for start in tqdm(range(0, len(indices), config.batch_size), desc=f"localize {artifact}",
                          disable=not progress, leave=False):
            batch = indices[start:start + config.batch_size]
            x = torch.stack([dataset[int(i)][0] for i in batch]).to(device)
            heatmaps = cav_heatmaps(attributor, x, layer, cav.direction, axis, config.localization_init, threshold)
            masks = heatmap_masks(heatmaps, **mask_options(config))
            for i, heatmap, mask in zip(batch, heatmaps, masks):
                sid = dataset.sample_ids[int(i)]
                if not is_safe_id(sid):
                    raise UserError(f"sample id {sid!r} cannot be a file name")
                entry = {"mask": f"masks/{sid}{suffix}", "heatmap": f"heatmaps/{sid}.npy"}
                write_heatmap(out_dir / entry["heatmap"], heatmap.numpy())
                write_mask(out_dir / entry["mask"], mask.numpy())
                samples[sid] = entry
    index = {"artifact": artifact, "split": config.localization_split, "layer": layer,
             "threshold": config.mask_threshold, "init": config.localization_init, "gate_threshold": threshold,
             "samples": samples}
    write_json(out_dir / "index.json", index)  # last: its presence means every file above is complete
    shown = indices[:16]
    sample_grid(dataset, shown, [dataset.sample_ids[int(i)] for i in shown], out_dir / "masks_overview.png",
                overlays=[read_mask(out_dir / samples[dataset.sample_ids[int(i)]]["mask"]).numpy() for i in shown],
                title=f"localized '{artifact}' ({layer})")
    return index


def evaluate_localization(config, splits, artifact, loc_dir):
    """Per-sample IoU and artifact relevance of the stored heatmaps and masks against ground truth."""
    loc_dir = Path(loc_dir)
    index = load_index(loc_dir)
    dataset = splits.get(index["split"])
    if not has_ground_truth(dataset, artifact):
        raise UserError(f"no ground-truth masks of '{artifact}' in split '{index['split']}'")
    ids = list(index["samples"])
    idx = positions(dataset, ids, f"{loc_dir / 'index.json'}")
    present = ground_truth_labels(dataset, artifact, idx)
    rows = []
    for sid, i, has_artifact in tqdm(list(zip(ids, idx, present)), desc="evaluate", leave=False):
        if not has_artifact:
            continue  # no ground-truth mask to compare with
        target = dataset.get_mask(int(i), artifact)
        entry = index["samples"][sid]
        mask = read_mask(loc_dir / entry["mask"])
        heatmap = torch.from_numpy(np.load(loc_dir / entry["heatmap"]))
        if target.dim() == mask.dim() + 1:  # signals: a (lead, time) ground truth against a time mask
            target = torch.as_tensor(target).bool().any(0)
        if mask.shape != target.shape:
            raise UserError(f"mask of {sid} is {tuple(mask.shape)}, ground truth {tuple(target.shape)}; "
                            "localize again with this config")
        rows.append({"sample_id": sid, "iou": iou(mask, target), "artifact_relevance": artifact_relevance(heatmap, target),
                     "mask_fraction": float(mask.float().mean()), "target_fraction": float(target.float().mean())})
    if not rows:
        raise UserError(f"none of the localized samples carries '{artifact}' by ground truth")
    summary = {"artifact": artifact, "split": index["split"], "layer": index.get("layer"), "n": len(rows)}
    for key in ("iou", "artifact_relevance"):
        values = np.array([r[key] for r in rows], dtype=np.float64)
        summary[f"{key}_n"] = int(np.isfinite(values).sum())  # samples that have a value (NaN: nothing to score)
        summary[f"{key}_mean"] = float(np.nanmean(values))
        summary[f"{key}_median"] = float(np.nanmedian(values))
        summary[f"{key}_se"] = float(np.nanstd(values, ddof=1) / np.sqrt(np.isfinite(values).sum())) if len(values) > 1 else float("nan")
    return rows, summary
