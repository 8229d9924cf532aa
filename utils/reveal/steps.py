"""The reveal step as library functions: SpRAy, DORA and CRP with their figures, and the check of
what they found against ground truth. The entry points under ``experiments/preprocessing`` and
``experiments/reveal`` parse arguments, call these and print; the pipeline calls them with its
config object. Each returns the rows its entry point prints (and the paths it wrote).
"""
import numpy as np

from datasets import get_dataset_from_config
from utils.config import save_resolved_config
from utils.io import read_json, write_json
from utils.locks import folder_lock
from utils.lrp.attribution import get_attributor
from utils.paths import step_dir
from utils.reveal.crp import build_references, references_path, run_crp
from utils.reveal.dora import cached_reference_set, load_model_and_shape, run_dora
from utils.reveal.evaluation import evaluate_reveal
from utils.reveal.plots import embedding_with_grid, show_heatmap, show_image
from utils.reveal.results import read_result, result_path
from utils.reveal.spray import run_spray
from utils.reveal.store_views import n_classes_of, open_store, parse_class_indices

REFS_SHOWN = 3  # reference samples shown per outlier neuron (DORA, CRP figures)
TOP_K = 5  # outlier neurons per DORA/CRP result checked against the artifact


# --- SpRAy --------------------------------------------------------------------------------------
def spray_step(config, class_indices=None):
    """SpRAy of each class (``class_indices``: comma-separated, default all); one row per class."""
    with folder_lock(step_dir(config, "reveal")):  # one run per folder
        with open_store(config) as store:
            classes = parse_class_indices(class_indices, n_classes_of(store))
        save_resolved_config(config, step_dir(config, "reveal"))
        rows = []
        for class_id, (result, path) in zip(classes, spray_classes(config, classes)):
            default = result.clusterings.get(config.spray_default_clustering)
            top = result.payload(config)["outlier_samples"][:3]
            rows.append({"class": class_id, "samples": len(result.sample_ids),
                         "clusters (" + config.spray_default_clustering + ")":
                             "-" if default is None else len(set(default.tolist()) - {-1}),
                         "LOF outliers": int(np.sum(result.flags)),
                         "top outliers": ", ".join(o["sample_id"] for o in top), "json": str(path)})
    return rows


def spray_classes(config, classes):
    """``[(result, json path)]`` of SpRAy for each class, ``spray_workers`` classes at a time.

    Classes are independent, so each can run in its own process (joblib's loky workers, which
    also limit each worker's BLAS threads to its share of the cores, so workers do not fight over
    them). Every class's computation is seeded by the config alone: the results do not depend on
    the number of workers.
    """
    workers = min(config.spray_workers, len(classes))
    if workers <= 1:
        return [run_spray(config, class_id) for class_id in classes]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=workers, backend="loky")(delayed(run_spray)(config, class_id) for class_id in classes)


def plot_spray(config, class_id):
    """The 2-D embedding of one class coloured by cluster, outliers circled, with their images and
    heatmaps (runs SpRAy first if its result is missing); returns (figure path, outlier rows)."""
    if not result_path(config, "spray", class_id).is_file():
        run_spray(config, class_id)
    result = read_result(config, "spray", class_id)
    outliers = result["outlier_samples"][:config.n_outliers]
    split = get_dataset_from_config(config).get(result["split"])
    position = {i: p for p, i in enumerate(result["sample_index"])}
    with open_store(config) as store:
        heatmaps = store.file["heatmaps"]
        panels = [[_image_panel(split, o), _heatmap_panel(heatmaps[o["sample_index"]], o)] for o in outliers]
    labels = result["clusterings"].get(result["default_clustering"])
    path = result_path(config, "spray", class_id).with_suffix(".png")
    embedding_with_grid(path, result["embedding_2d"], labels, [position[o["sample_index"]] for o in outliers],
                        panels, f"SpRAy class {class_id} ({result['default_clustering']})")
    return path, [{"rank": r + 1, "sample": o["sample_id"], "LOF": o["score"]} for r, o in enumerate(outliers)]


def _image_panel(split, outlier):
    image = split.load_raw(outlier["sample_index"]).numpy()
    return lambda ax: show_image(ax, image, outlier["sample_id"])


def _heatmap_panel(heatmap, outlier):
    heatmap = np.asarray(heatmap)
    return lambda ax: show_heatmap(ax, heatmap, f"LOF {outlier['score']:.2f}")


# --- DORA ---------------------------------------------------------------------------------------
def outlier_neuron_rows(result, config, n):
    return [{"rank": r + 1, "layer": o["layer"], "channel": o["channel"], "LOF": o["score"],
             "LOF outlier": o["is_outlier"]} for r, o in enumerate(result.payload(config)["outlier_neurons"][:n])]


def dora_step(config, class_id=None, force_recompute=False):
    """DORA on the config's layer; returns (result, json path, where the references came from)."""
    with folder_lock(step_dir(config, "reveal")):  # one run per folder
        save_resolved_config(config, step_dir(config, "reveal"))
        references, cache = cached_reference_set(config, class_id, force=force_recompute)
        result, path, _ = run_dora(config, class_id, references=references)
    return result, path, cache


def plot_dora(config, class_id=None):
    """The 2-D view of the neurons' activation patterns, outliers with their reference signals; returns
    (figure path, json path, result)."""
    references, _ = cached_reference_set(config, class_id)
    result, json_path, _ = run_dora(config, class_id, references=references)
    payload = result.payload(config)
    outliers = payload["outlier_neurons"][:config.n_outliers]
    position = {c: p for p, c in enumerate(payload["channels"])}
    split = get_dataset_from_config(config).get(config.reveal_split)
    panels = [[_reference_panel(split, references, o["channel"], k) for k in range(REFS_SHOWN)] for o in outliers]
    path = json_path.with_suffix(".png")
    embedding_with_grid(path, payload["embedding_2d"], None, [position[o["channel"]] for o in outliers], panels,
                        f"DORA {result.layer} ({config.dora_reference}, {config.dora_aggregation})",
                        n_rows_per_item=REFS_SHOWN)
    return path, json_path, result


def _reference_panel(split, references, channel, k):
    refs = references.references.get(channel, [])
    if k >= len(refs):
        return lambda ax: ax.axis("off")
    title = f"ch {channel}" if k == 0 else ""
    if references.signals is not None:  # sAMS live in normalised input space
        image = split.denormalize(references.signals[refs[k]]).numpy()
    else:
        index = split.sample_ids.index(refs[k])
        image = split.load_raw(index).numpy()
    return lambda ax: show_image(ax, np.asarray(image), title)


# --- CRP ----------------------------------------------------------------------------------------
def crp_step(config):
    """CRP reference samples and relevance-pattern outliers of each class (``crp_class_indices``, default
    all); one row per class."""
    with folder_lock(step_dir(config, "reveal")):  # one run per folder
        save_resolved_config(config, step_dir(config, "reveal"))
        data = get_dataset_from_config(config)
        model, _, device = load_model_and_shape(config)
        attributor = get_attributor(model, backend=config.lrp_backend)
        classes = config.crp_class_indices if config.crp_class_indices is not None else list(range(data.n_classes))
        rows = []
        for class_id in classes:
            layer, refs = build_references(config, class_id, data.get(config.reveal_split), attributor, device)
            path = references_path(config, class_id)
            write_json(path, {"layer": layer, "class_id": class_id, "cropped": config.crp_crop,
                              "references": {str(c): v for c, v in refs.items()}})
            result, outliers_path = run_crp(config, class_id)
            top = result.payload(config)["outlier_neurons"][:3]
            rows.append({"class": class_id, "layer": layer, "neurons": len(refs),
                         "with references": sum(bool(v) for v in refs.values()),
                         "top outlier neurons": ", ".join(str(o["channel"]) for o in top),
                         "json": f"{path}, {outliers_path}"})
    return rows


def plot_crp(config, class_id):
    """The 2-D view of one class's relevance patterns, outlier neurons with their (cropped) reference
    samples; returns (figure path, json path, outlier rows)."""
    result, json_path = run_crp(config, class_id)
    payload = result.payload(config)
    outliers = payload["outlier_neurons"][:config.n_outliers]
    split = get_dataset_from_config(config).get(config.reveal_split)
    refs = _crp_references(config, class_id, split, [o["channel"] for o in outliers])
    position = {c: p for p, c in enumerate(payload["channels"])}
    panels = [[_crop_panel(split, refs.get(o["channel"], []), k, o["channel"]) for k in range(REFS_SHOWN)]
              for o in outliers]
    path = json_path.with_suffix(".png")
    embedding_with_grid(path, payload["embedding_2d"], None, [position[o["channel"]] for o in outliers], panels,
                        f"CRP relevance patterns, class {class_id}, {result.layer}", n_rows_per_item=REFS_SHOWN)
    rows = [{"rank": r + 1, "layer": o["layer"], "channel": o["channel"], "LOF": o["score"],
             "LOF outlier": o["is_outlier"]} for r, o in enumerate(outliers)]
    return path, json_path, rows


def _crp_references(config, class_id, split, channels):
    path = references_path(config, class_id)
    if path.is_file():
        return {int(c): v for c, v in read_json(path)["references"].items()}
    model, _, device = load_model_and_shape(config)
    _, refs = build_references(config, class_id, split, get_attributor(model, backend=config.lrp_backend),
                               device, channels=channels)
    return refs


def _crop_panel(split, refs, k, channel):
    if k >= len(refs):
        return lambda ax: ax.axis("off")
    ref = refs[k]
    image = split.load_raw(ref["sample_index"]).numpy()
    box = ref["box"]
    crop = image[:, box[0]:box[1], box[2]:box[3]] if image.ndim == 3 else image[:, box[0]:box[1]]
    return lambda ax: show_image(ax, crop, f"ch {channel}" if k == 0 else "")


# --- does the reveal step find the artifact? -----------------------------------------------------
def reveal_quality_step(config, artifact, top_k=TOP_K):
    """Check every reveal result against the artifact's ground truth; writes ``quality.json``."""
    quality = evaluate_reveal(config, artifact, top_k)
    path = step_dir(config, "reveal") / "quality.json"
    write_json(path, quality)
    return quality, path


def reveal_verdicts(quality) -> dict:
    """The two verdicts the headline states from ``quality.json``: did SpRAy find the artifact's cluster,
    and is an artifact neuron among DORA's or CRP's top outliers (each checked against ground truth)."""
    return {"spray": any(e["passes"] for e in quality["spray"]),
            "neuron": any(e["passes"] for method in ("dora", "crp") for e in quality[method])}


def quality_rows(quality):
    """One row per reveal result: what was measured, its value, whether it passes."""
    rows = []
    for entry in quality["spray"]:
        best = entry["best_cluster"] or {}
        where = entry.get("layer") and f"{entry['layer']} {entry.get('feature')}" or "input heatmaps"
        rows.append({"method": "spray", "file": entry["file"], "measure": f"best cluster ({entry['best_clustering']}, {where})",
                     "value": f"purity {best.get('purity', float('nan')):.2f}, coverage {best.get('coverage', float('nan')):.2f}",
                     "passes": entry["passes"]})
    for method in ("dora", "crp"):
        for entry in quality[method]:
            rows.append({"method": method, "file": entry["file"],
                         "measure": f"best AUROC of top-{quality['top_k']} ({entry.get('layer')} {entry['feature']})",
                         "value": f"{entry['best_auroc']:.3f} (either direction {entry['best_separation']:.3f}; "
                                  f"within class {entry['best_auroc_within_class']:.3f}; "
                                  f"rels_max {entry['best_relevance_auroc']:.3f})", "passes": entry["passes"]})
    for method, hint in quality.get("missing", {}).items():
        rows.append({"method": method, "file": "-", "measure": "not evaluated", "value": hint, "passes": False})
    return rows
