"""Comparison of every correction run for one data set and model: one row per method.

Each method is reported at the configuration of its grid chosen on the *validation* split
(highest attacked accuracy among those whose clean accuracy drops by at most ``max_clean_drop``
against the original model; if none qualifies, the highest clean accuracy), with *test* numbers.
"""
import csv
import io

from model_training.corrections.run import mitigation_dir
from model_training.corrections.base import get_correction_method
from models import layer_for_config
from utils.paths import step_dir
from utils.io import read_json, write_text
from utils.table import markdown_table

COLUMNS = ["method", "config", "layer", "lamb", "clean", "attacked", "ch", "gap_closed", "artifact_relevance",
           "ar_excess", "tcav", "tcav_sensitivity", "tcav_refit", "seconds"]


def _acc(results, model, split, subset):
    try:
        return results[model][split][subset]["accuracy"]
    except KeyError:
        return float("nan")


def collect(config):
    """Everything known about one correction run (``None`` if it has not been evaluated)."""
    out = step_dir(config, "evaluation", create=False)
    if not (out / "subsets.json").is_file():
        return None
    subsets = read_json(out / "subsets.json")
    relevance = read_json(out / "artifact_relevance.json") if (out / "artifact_relevance.json").is_file() else {}
    tcav = read_json(out / "tcav.json") if (out / "tcav.json").is_file() else {}
    mitigation = read_json(mitigation_dir(config, create=False) / "metrics.json")
    return {"config": config, "subsets": subsets, "relevance": relevance, "tcav": tcav,
            "seconds": mitigation.get("correction_seconds", float("nan"))}


def _tcav(run, model, cav):
    cls = run["tcav"].get("biased_class")
    try:
        entry = run["tcav"][model][cav][cls]
        return entry["tcav"], entry["sensitivity"]
    except (KeyError, TypeError):
        return float("nan"), float("nan")


def row_for(run, model="corrected", split="test"):
    config = run["config"]
    clean, attacked = _acc(run["subsets"], model, split, "clean"), _acc(run["subsets"], model, split, "attacked")
    orig_clean, orig_attacked = (_acc(run["subsets"], "original", split, "clean"),
                                 _acc(run["subsets"], "original", split, "attacked"))
    gap = orig_clean - orig_attacked
    tcav, sensitivity = _tcav(run, model, "original_cav")
    method = get_correction_method(config.method)
    corrected = model == "corrected"
    return {"method": method.label(config) if corrected else "original",
            "config": config.config_name if corrected else "-",
            # the layer matters for frozen fine-tuning and for projections, not for fully trained ones
            "layer": layer_for_config(config) if corrected and (config.freeze or not method.trains) else "-",
            "lamb": config.lamb if corrected and method.uses_lamb else "-",
            "clean": clean, "attacked": attacked, "ch": _acc(run["subsets"], model, split, "ch"),
            "gap_closed": ((attacked - clean) - (orig_attacked - orig_clean)) / gap if gap > 0 else float("nan"),
            "artifact_relevance": run["relevance"].get(model, {}).get("artifact_relevance", float("nan")),
            # the part of it the artifact draws (relevance of the same region without the artifact subtracted)
            "ar_excess": run["relevance"].get(model, {}).get("excess", float("nan")),
            "tcav": tcav, "tcav_sensitivity": sensitivity,
            "tcav_refit": _tcav(run, model, "refit_cav")[0] if model == "corrected" else float("nan"),
            "seconds": run["seconds"] if model == "corrected" else 0.0}


def select(runs, max_clean_drop=0.03, split="val"):
    """Per method, the run chosen on ``split`` (see module docstring)."""
    best = {}
    def label(run):
        return get_correction_method(run["config"].method).label(run["config"])

    for method in dict.fromkeys(label(r) for r in runs):
        candidates = [r for r in runs if label(r) == method]

        def val(r, subset, model="corrected"):
            return _acc(r["subsets"], model, split, subset)

        ok = [r for r in candidates if val(r, "clean") >= val(r, "clean", "original") - max_clean_drop]
        best[method] = (max(ok, key=lambda r: val(r, "attacked")) if ok
                        else max(candidates, key=lambda r: val(r, "clean")))
    return best


def comparison(configs, max_clean_drop=0.03):
    """Rows (original first, then one per method) and the rows of every run of the grid."""
    runs = [run for run in (collect(c) for c in configs) if run is not None]
    if not runs:
        return [], []
    chosen = select(runs, max_clean_drop)
    originals = [r for r in runs if "original" in r["subsets"]]
    rows = [row_for(originals[0], "original")] if originals else []
    rows += [row_for(run) for run in chosen.values()]
    return rows, [row_for(run) for run in runs]


def write_comparison(rows, all_rows, out_dir, name="comparison"):
    """CSV + markdown of the chosen rows and of the whole grid."""
    for suffix, table in (("", rows), ("_grid", all_rows)):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(table)
        write_text(out_dir / f"{name}{suffix}.csv", buffer.getvalue())
        write_text(out_dir / f"{name}{suffix}.md", markdown_table(table, COLUMNS) + "\n")
    return out_dir / f"{name}.md"
