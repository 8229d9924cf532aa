"""How well the reveal step found a known shortcut (controlled data with artifact ground truth).

* SpRAy: the best cluster of the class that holds the artifact: its artifact purity and the share
  of that class's artifact samples it holds (coverage); a cluster with purity >= 0.8 and coverage
  >= 0.5 means the shortcut group is visible as one cluster.
* DORA / CRP: for each of the top-k outlier neurons, the AUROC with which its pooled activation
  (DORA: ``cavs_<dora_aggregation>``; CRP: ``cavs_max``) separates artifact from non-artifact
  samples of the reveal split. ``passes`` is the criterion of the task read literally: AUROC >= 0.9
  with the activation itself as the score (the neuron fires *more* on the artifact). Reported beside
  it, never mixed into it:

  - ``separation`` = max(AUROC, 1 - AUROC): a neuron the artifact switches off also separates;
  - ``auroc_within_class``: the same AUROC on the samples of the classes that carry the artifact
    only. When the artifact lives in one class, a neuron that merely prefers that class scores well
    above 0.5 on the whole split without responding to the artifact at all; inside the class that
    confound is gone, so this is the stricter reading of "a neuron that detects the artifact";
  - ``relevance_auroc``: the same with ``rels_max`` (how much the neuron matters on the artifact).

Evaluators are a registry keyed by method; each reads the method's JSON files. A method without
result files is listed under ``missing`` (with the command that writes them), so a table without
a CRP row never silently reads as "CRP was checked".
"""
import numpy as np
from sklearn.metrics import roc_auc_score

from utils.errors import UserError
from utils.paths import step_dir
from utils.registry import Registry
from utils.reveal.results import read_json
from utils.reveal.store_views import open_store

PURITY, COVERAGE, AUROC = 0.8, 0.5, 0.9
EVALUATORS = Registry("reveal evaluator")
register_evaluator = EVALUATORS.register


def artifact_labels(config, artifact):
    """Ground-truth artifact flags aligned with the rows of the reveal split's store."""
    from datasets import get_dataset_from_config

    split = get_dataset_from_config(config).get(config.reveal_split)
    if artifact not in split.artifact_names:
        raise UserError(f"--artifact '{artifact}' is not annotated in this data set; "
                        f"annotated: {', '.join(split.artifact_names) or 'none'}")
    with open_store(config) as store:
        index = store.array("sample_index")
    return split.artifact_labels(artifact)[index]


def best_cluster(labels, flags):
    """Best cluster for the artifact: the largest coverage among clusters with purity >= PURITY,
    else the best F1 of purity and coverage."""
    labels, flags = np.asarray(labels), np.asarray(flags, dtype=bool)
    total = max(int(flags.sum()), 1)
    rows = []
    for cluster in np.unique(labels[labels >= 0]):
        members = labels == cluster
        purity = float(flags[members].mean())
        coverage = float(flags[members].sum() / total)
        f1 = 0.0 if purity + coverage == 0 else 2 * purity * coverage / (purity + coverage)
        rows.append({"cluster": int(cluster), "size": int(members.sum()), "purity": purity, "coverage": coverage, "f1": f1})
    if not rows:
        return None
    pure = [r for r in rows if r["purity"] >= PURITY]
    return max(pure, key=lambda r: r["coverage"]) if pure else max(rows, key=lambda r: r["f1"])


def _method_files(config, method):
    folder = step_dir(config, "reveal", create=False)
    return sorted(folder.glob(f"{method}.json")) + sorted(folder.glob(f"{method}_class*.json"))


def _store_rows(config):
    """``sample_index -> store row`` (results name samples by their index in the split)."""
    with open_store(config) as store:
        index = store.array("sample_index")
    return {int(i): r for r, i in enumerate(index)}


@register_evaluator("spray")
def evaluate_spray(config, flags, top_k):
    out = []
    files = _method_files(config, "spray")
    row_of = _store_rows(config) if files else {}
    for path in files:
        result = read_json(path)
        class_flags = flags[[row_of[int(i)] for i in result["sample_index"]]]
        if not class_flags.any():
            continue  # a class without the artifact has no cluster to find
        per_clustering = {name: best_cluster(labels, class_flags) for name, labels in result["clusterings"].items()}
        name, best = max(((n, b) for n, b in per_clustering.items() if b), default=(None, None),
                         key=lambda item: (item[1]["purity"] >= PURITY, item[1]["coverage"], item[1]["f1"]))
        ranked = [row_of[int(o["sample_index"])] for o in result["outlier_samples"]]
        n_art = int(class_flags.sum())
        out.append({"file": path.name, "class_id": result["class_id"], "space": result.get("space"),
                    "layer": result.get("layer"), "feature": result.get("feature"), "artifact_samples": n_art,
                    "best_clustering": name, "best_cluster": best,
                    "default_clustering": per_clustering.get(result["default_clustering"]),
                    "outlier_precision_at_n_artifact": float(np.mean(flags[ranked[:n_art]])),
                    "passes": bool(best and best["purity"] >= PURITY and best["coverage"] >= COVERAGE)})
    return out


def _aurocs(flags, score):
    auroc = float(roc_auc_score(flags, score))
    return auroc, max(auroc, 1.0 - auroc)


def artifact_class_rows(labels, flags):
    """Rows of the classes that carry the artifact (single-label: label among them; multi-label:
    any of their labels set)."""
    labels, flags = np.asarray(labels), np.asarray(flags, dtype=bool)
    if labels.ndim == 2:
        classes = np.flatnonzero(labels[flags].any(0))
        return labels[:, classes].any(1)
    return np.isin(labels, np.unique(labels[flags]))


def _neuron_evaluator(method, feature_of):
    def evaluate(config, flags, top_k):
        out = []
        with open_store(config) as store:
            inside = artifact_class_rows(store.array("labels"), flags)
            within = inside if 0 < flags[inside].sum() < inside.sum() else None
            for path in _method_files(config, method):
                result = read_json(path)
                feature = feature_of(config)
                neurons = []
                for entry in result["outlier_neurons"][:top_k]:
                    score = store.features(entry["layer"], feature)[:, entry["channel"]]
                    relevance = store.features(entry["layer"], "rels_max")[:, entry["channel"]]
                    auroc, separation = _aurocs(flags, score)
                    neurons.append({"layer": entry["layer"], "channel": entry["channel"], "auroc": auroc,
                                    "separation": separation,
                                    "auroc_within_class": (float(roc_auc_score(flags[within], score[within]))
                                                           if within is not None else float("nan")),
                                    "relevance_auroc": float(roc_auc_score(flags, relevance))})

                def best(key, rows=neurons):
                    return max((n[key] for n in rows), default=float("nan"))

                out.append({"file": path.name, "class_id": result["class_id"], "layer": result.get("layer"),
                            "feature": feature, "top_neurons": neurons, "best_auroc": best("auroc"),
                            "best_separation": best("separation"),
                            "best_auroc_within_class": best("auroc_within_class"),
                            "best_relevance_auroc": best("relevance_auroc"),
                            "passes": bool(best("auroc") >= AUROC),
                            "passes_either_direction": bool(best("separation") >= AUROC),
                            "passes_within_class": bool(best("auroc_within_class") >= AUROC)})
        return out

    return evaluate


register_evaluator("dora")(_neuron_evaluator("dora", lambda c: f"cavs_{c.dora_aggregation}"))
register_evaluator("crp")(_neuron_evaluator("crp", lambda c: "cavs_max"))

# what writes each method's result files (named in ``missing``)
PRODUCERS = {"spray": "experiments.preprocessing.run_spray_preprocessing",
             "dora": "experiments.preprocessing.run_dora_preprocessing",
             "crp": "experiments.preprocessing.run_crp_preprocessing (or experiments.reveal.crp.plot_crp_outliers_2d)"}


def evaluate_reveal(config, artifact, top_k=5):
    """Quality of every reveal result present for this config; ``{method: [per-file results]}``
    plus ``missing``: the methods that have no result files for this config."""
    flags = artifact_labels(config, artifact)
    if flags.all() or not flags.any():
        raise UserError(f"artifact '{artifact}' is in {'all' if flags.all() else 'none'} of the "
                        f"{config.reveal_split} samples; nothing to separate")
    results = {method: func(config, flags, top_k) for method, func in EVALUATORS.items()}
    missing = [m for m in EVALUATORS if not _method_files(config, m)]
    return {"artifact": artifact, "split": config.reveal_split, "top_k": top_k,
            "thresholds": {"purity": PURITY, "coverage": COVERAGE, "auroc": AUROC},
            "missing": {m: f"no {m} results; run python -m {PRODUCERS.get(m, m)}" for m in missing},
            **results}
