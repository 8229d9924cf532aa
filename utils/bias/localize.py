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
                                     is_safe_id, load_index, read_mask, write_heatmap, write_mask)
from utils.bias.retrieval import fit_train_cav
from utils.device import resolve_device
from utils.errors import UserError
from utils.io import write_json
from utils.lrp.attribution import get_attributor
from utils.preprocessing import channel_axis


def _sample_ground_truth(dataset, artifact):
    return np.flatnonzero(ground_truth_labels(dataset, artifact))


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


def localize(config, splits, layer, artifact, out_dir, progress=True) -> dict:
    """Fit the train CAV, write heatmaps, masks and ``index.json`` for the selected samples."""
    out_dir = Path(out_dir)
    device = resolve_device(config.device)
    cav, _, _ = fit_train_cav(config, splits, layer, config.cav_mode, artifact,
                              cav_type=config.localization_cav_type or config.cav_type)
    write_json(out_dir / "cav.json", {"layer": layer, "features": config.cav_mode, **cav.to_dict()})
    model = load_model(config, splits, device)
    spec = get_model_spec(config.model_name)
    attributor = get_attributor(model, backend=config.lrp_backend, composite=config.localization_composite)
    dataset = splits.get(config.localization_split)
    indices = select_samples(config, dataset, artifact)
    suffix = MASK_SUFFIX.get(getattr(dataset, "modality", "image"), ".npy")
    samples = {}
    with no_augmentation(dataset):
        for start in tqdm(range(0, len(indices), config.batch_size), desc=f"localize {artifact}",
                          disable=not progress, leave=False):
            batch = indices[start:start + config.batch_size]
            x = torch.stack([dataset[int(i)][0] for i in batch]).to(device)
            heatmaps = cav_heatmaps(attributor, x, layer, cav.direction, channel_axis(spec), config.localization_init)
            masks = heatmap_masks(heatmaps, config.mask_threshold, config.mask_blur_kernel, config.mask_blur_sigma,
                                  percentile=config.mask_percentile)
            for i, heatmap, mask in zip(batch, heatmaps, masks):
                sid = dataset.sample_ids[int(i)]
                if not is_safe_id(sid):
                    raise UserError(f"sample id {sid!r} cannot be a file name")
                entry = {"mask": f"masks/{sid}{suffix}", "heatmap": f"heatmaps/{sid}.npy"}
                write_heatmap(out_dir / entry["heatmap"], heatmap.numpy())
                write_mask(out_dir / entry["mask"], mask.numpy())
                samples[sid] = entry
    index = {"artifact": artifact, "split": config.localization_split, "layer": layer,
             "threshold": config.mask_threshold, "samples": samples}
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
        summary[f"{key}_mean"] = float(np.nanmean(values))
        summary[f"{key}_median"] = float(np.nanmedian(values))
        summary[f"{key}_se"] = float(np.nanstd(values, ddof=1) / np.sqrt(np.isfinite(values).sum())) if len(values) > 1 else float("nan")
    return rows, summary
