"""How well the reveal step found a known shortcut (controlled data with artifact ground truth).

* SpRAy: the best cluster of the class that holds the artifact: its artifact purity and the share
  of that class's artifact samples it holds (coverage); a cluster with purity >= 0.8 and coverage
  >= 0.5 means the shortcut group is visible as one cluster.
* DORA / CRP: for each of the top-k outlier neurons, the AUROC with which its pooled activation
  separates artifact from non-artifact samples of the reveal split.

Evaluators are a registry keyed by method; each reads the method's JSON files.
"""
import numpy as np
from sklearn.metrics import roc_auc_score

from utils.errors import UserError
from utils.paths import step_dir
from utils.reveal.results import read_json
from utils.reveal.store_views import open_store

PURITY, COVERAGE, AUROC = 0.8, 0.5, 0.9
_EVALUATORS = {}


def register_evaluator(method):
    def decorate(func):
        _EVALUATORS[method] = func
        return func

    return decorate


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


@register_evaluator("spray")
def evaluate_spray(config, flags, top_k):
    out = []
    for path in _method_files(config, "spray"):
        result = read_json(path)
        rows = np.asarray(result["sample_index"])
        class_flags = flags[rows]  # store rows are in sample order
        if not class_flags.any():
            continue  # a class without the artifact has no cluster to find
        per_clustering = {name: best_cluster(labels, class_flags) for name, labels in result["clusterings"].items()}
        name, best = max(((n, b) for n, b in per_clustering.items() if b), default=(None, None),
                         key=lambda item: (item[1]["purity"] >= PURITY, item[1]["coverage"], item[1]["f1"]))
        ranked = [o["sample_index"] for o in result["outlier_samples"]]
        n_art = int(class_flags.sum())
        out.append({"file": path.name, "class_id": result["class_id"], "artifact_samples": n_art,
                    "best_clustering": name, "best_cluster": best,
                    "default_clustering": per_clustering.get(result["default_clustering"]),
                    "outlier_precision_at_n_artifact": float(np.mean(flags[ranked[:n_art]])),
                    "passes": bool(best and best["purity"] >= PURITY and best["coverage"] >= COVERAGE)})
    return out


def _neuron_evaluator(method, feature_of):
    def evaluate(config, flags, top_k):
        out = []
        with open_store(config) as store:
            for path in _method_files(config, method):
                result = read_json(path)
                neurons = []
                for entry in result["outlier_neurons"][:top_k]:
                    score = store.features(entry["layer"], feature_of(config))[:, entry["channel"]]
                    relevance = store.features(entry["layer"], "rels_max")[:, entry["channel"]]
                    # the relevance AUROC is context only: it shows a neuron the model *uses* on the
                    # artifact even where the activation alone does not single the artifact out
                    neurons.append({"layer": entry["layer"], "channel": entry["channel"],
                                    "auroc": float(roc_auc_score(flags, score)),
                                    "relevance_auroc": float(roc_auc_score(flags, relevance))})
                best = max((n["auroc"] for n in neurons), default=float("nan"))
                # a neuron the artifact switches off separates too (AUROC near 0); reported apart,
                # the pass criterion stays the activation's own direction
                separation = max((max(n["auroc"], 1 - n["auroc"]) for n in neurons), default=float("nan"))
                out.append({"file": path.name, "class_id": result["class_id"], "feature": feature_of(config),
                            "top_neurons": neurons, "best_auroc": best, "best_separation": separation,
                            "best_relevance_auroc": max((n["relevance_auroc"] for n in neurons), default=float("nan")),
                            "passes": bool(best >= AUROC)})
        return out

    return evaluate


register_evaluator("dora")(_neuron_evaluator("dora", lambda c: f"cavs_{c.dora_aggregation}"))
register_evaluator("crp")(_neuron_evaluator("crp", lambda c: "cavs_max"))


def evaluate_reveal(config, artifact, top_k=5):
    """Quality of every reveal result present for this config; ``{method: [per-file results]}``."""
    flags = artifact_labels(config, artifact)
    if flags.all() or not flags.any():
        raise UserError(f"artifact '{artifact}' is in {'all' if flags.all() else 'none'} of the "
                        f"{config.reveal_split} samples; nothing to separate")
    return {"artifact": artifact, "split": config.reveal_split, "top_k": top_k,
            "thresholds": {"purity": PURITY, "coverage": COVERAGE, "auroc": AUROC},
            **{method: func(config, flags, top_k) for method, func in _EVALUATORS.items()}}
