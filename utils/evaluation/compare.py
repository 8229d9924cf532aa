"""Comparison of every correction of one model, with its uncertainty, its cost and its verdict.

A configured correction is a set of runs (each value of its ``sweep`` times each of its ``seeds``,
:mod:`model_training.corrections.runs`). A *candidate* is one configuration at one strength; its row
gives test numbers as mean ± sd over its seeds. The selection rule of
:mod:`model_training.corrections.selection` (the best validation attacked accuracy within the clean
budget, on the mean over seeds) first keeps one strength of each swept configuration, then one
candidate per method among the configurations of a grid.

What a row says besides accuracy:

* ``gap_closed`` (share of the original model's clean-attacked gap a correction closes) always sits
  beside ``clean_change`` (clean test accuracy minus the original's): an improvement is never shown
  without its cost;
* ``status``: ``ok``, ``degraded`` (clean accuracy more than ``max_clean_drop`` below the original's on
  validation or on test) or ``collapsed`` (clean accuracy at the majority-class rate), the worst over
  the seeds (``status_seeds`` counts them). A collapsed candidate's improvement figures (gap closed,
  artifact relevance, TCAV) are not reported: they would reward a broken model;
* ``p_clean``, ``p_attacked`` (McNemar) and ``p_auroc`` (DeLong, attacked subset): corrected vs
  original on the same test images; the median over seeds, and in ``*_significant`` how many seeds
  had p < 0.05.

The best correction (:func:`best`) is named by :data:`BEST_RULE`; a degraded or collapsed candidate is
never it.
"""
import csv
import io

import numpy as np

from model_training.corrections.base import get_correction_method
from model_training.corrections.run import corrected_checkpoint_path, mitigation_dir
from model_training.corrections.runs import candidates, chosen_strength, epochs_trained, strength_key
from model_training.corrections.selection import CleanBudget, choose, clean_subset, target_subset, worst
from models import layer_for_config
from utils.evaluation.stats import mean_sd
from utils.identity import file_identity
from utils.io import nan_for_null, read_json, write_text
from utils.paths import step_dir
from utils.table import markdown_table

SIGNIFICANCE = 0.05
MEASURED = ("epochs", "val_clean", "val_attacked", "clean", "attacked", "ch", "gap_closed", "clean_change", "artifact_relevance",
            "ar_excess", "tcav", "tcav_sensitivity", "tcav_refit", "seconds")
P_VALUES = ("p_clean", "p_attacked", "p_auroc")
NOT_FOR_COLLAPSED = ("gap_closed", "artifact_relevance", "ar_excess", "tcav", "tcav_sensitivity", "tcav_refit")
COLUMNS = ["method", "config", "layer", "strength", "seeds", "epochs", "status", "val_clean", "val_attacked", "clean", "attacked",
           "ch", "gap_closed", "clean_change", "p_clean", "p_attacked", "p_auroc", "artifact_relevance", "ar_excess",
           "tcav", "tcav_refit", "seconds"]
BEST_RULE = ("the correction (Vanilla excluded) with the highest validation attacked accuracy among those whose "
             "status is ok: every seed within max_clean_drop of the original's clean accuracy on validation and test")
EVALUATIONS = ("subsets.json", "artifact_relevance.json", "tcav.json", "heatmaps.png")
EVALUATED = "evaluated.json"  # beside them: the identities of the models they were computed from


# --- one run -----------------------------------------------------------------------------------
def evaluation_dir(config):
    return step_dir(config, "evaluation", create=False)


def collect(config):
    """Everything measured about one run (``None`` until its subsets are evaluated)."""
    out = evaluation_dir(config)
    if not (out / "subsets.json").is_file():
        return None

    def read(path):
        # measurements only: a null (a missing number in strict JSON) is computed with as NaN
        return nan_for_null(read_json(path))

    def optional(name):
        return read(out / name) if (out / name).is_file() else {}

    return {"config": config, "subsets": read(out / "subsets.json"), "relevance": optional("artifact_relevance.json"),
            "tcav": optional("tcav.json"), "mitigation": read(mitigation_dir(config, create=False) / "metrics.json")}


def _accuracy(subsets, subset):
    return subsets[subset]["accuracy"] if subset in subsets else float("nan")


def _tcav(run, model, cav):
    try:
        entry = run["tcav"][model][cav][run["tcav"]["biased_class"]]
        return entry["tcav"], entry["sensitivity"]
    except (KeyError, TypeError):
        return float("nan"), float("nan")


def _p(run, subset, test):
    try:
        return run["subsets"]["paired_tests"]["test"][subset][test]["p_value"]
    except KeyError:
        return float("nan")


def run_values(run, max_clean_drop):
    """The numbers of one run (one seed): test accuracies, cost, gap closed, p-values, status."""
    test, original = run["subsets"]["corrected"].get("test", {}), run["subsets"].get("original", {}).get("test", {})
    selection = run["mitigation"].get("selection", {})
    clean_name = clean_subset(test) if test else "clean"
    clean, attacked = _accuracy(test, clean_name), _accuracy(test, "attacked")
    orig_clean, orig_attacked = _accuracy(original, clean_name), _accuracy(original, "attacked")
    gap = orig_clean - orig_attacked
    statuses = [selection.get("status", "ok")]
    if original:
        statuses.append(CleanBudget.from_original(original, max_clean_drop).status(clean))
    val = selection.get("val", {})
    return {"epochs": float(epochs_trained(run["mitigation"])),
            "val_clean": val.get("clean", val.get("ch", float("nan"))),
            "val_attacked": val.get(target_subset(val), float("nan")) if val else float("nan"),
            "clean": clean, "attacked": attacked, "ch": _accuracy(test, "ch"),
            "gap_closed": ((attacked - clean) - (orig_attacked - orig_clean)) / gap if gap > 0 else float("nan"),
            "clean_change": clean - orig_clean,
            "p_clean": _p(run, clean_name, "accuracy"), "p_attacked": _p(run, "attacked", "accuracy"),
            "p_auroc": _p(run, "attacked", "auroc"),
            "artifact_relevance": run["relevance"].get("corrected", {}).get("artifact_relevance", float("nan")),
            # the part of it the artifact draws (relevance of the same region without the artifact subtracted)
            "ar_excess": run["relevance"].get("corrected", {}).get("excess", float("nan")),
            "tcav": _tcav(run, "corrected", "original_cav")[0], "tcav_sensitivity": _tcav(run, "corrected", "original_cav")[1],
            "tcav_refit": _tcav(run, "corrected", "refit_cav")[0],
            "seconds": run["mitigation"].get("correction_seconds", float("nan")), "status": worst(statuses)}


# --- candidates: one configuration at one strength, over its seeds ----------------------------------
def _summary(values_per_seed):
    row = {}
    for key in MEASURED:
        mean, sd, _ = mean_sd([v[key] for v in values_per_seed])
        row[key], row[f"{key}_sd"] = mean, sd
    for key in P_VALUES:
        p = np.array([v[key] for v in values_per_seed], dtype=float)
        p = p[np.isfinite(p)]
        row[key] = float(np.median(p)) if len(p) else float("nan")
        row[f"{key}_significant"] = int((p < SIGNIFICANCE).sum())
    statuses = [v["status"] for v in values_per_seed]
    row["status"] = worst(statuses)
    row["status_seeds"] = ", ".join(f"{s} {statuses.count(s)}" for s in ("ok", "degraded", "collapsed") if s in statuses)
    if row["status"] == "collapsed":  # nothing a broken model scores counts as an improvement
        for key in NOT_FOR_COLLAPSED:
            row[key] = row[f"{key}_sd"] = float("nan")
    return row


def candidate_row(config, value, runs, max_clean_drop):
    """The row of one candidate (``runs``: the collected runs of its seeds)."""
    method = get_correction_method(config.method)
    key = strength_key(config)
    return {"method": method.label(config), "config": config.config_name,
            # the layer matters for frozen fine-tuning and for projections, not for fully trained ones
            "layer": layer_for_config(config) if config.freeze or not method.trains else "-",
            "strength": f"{key}={value:g}" if key is not None else "-", "strength_value": value,
            "seeds": len(runs), **_summary([run_values(run, max_clean_drop) for run in runs])}


def original_row(run):
    test = run["subsets"]["original"].get("test", {})
    tcav, sensitivity = _tcav(run, "original", "original_cav")
    relevance = run["relevance"].get("original", {})
    selection = run["mitigation"].get("selection", {}).get("original_val", {})
    return {"method": "original", "config": "-", "layer": "-", "strength": "-", "seeds": 1, "status": "-",
            "val_clean": selection.get("clean", selection.get("ch", float("nan"))),
            "val_attacked": selection.get("attacked", float("nan")),
            "clean": _accuracy(test, clean_subset(test) if test else "clean"), "attacked": _accuracy(test, "attacked"),
            "ch": _accuracy(test, "ch"), "gap_closed": 0.0, "clean_change": 0.0,
            "artifact_relevance": relevance.get("artifact_relevance", float("nan")),
            "ar_excess": relevance.get("excess", float("nan")), "tcav": tcav, "tcav_sensitivity": sensitivity,
            "tcav_refit": float("nan"), "seconds": 0.0}


class Comparison:
    """Every candidate of ``configs`` that has been evaluated, the original model's row, and per
    method the candidate the selection rule keeps (validation, mean over seeds)."""

    def __init__(self, configs, max_clean_drop=None):
        self.candidates = []  # (config, value, runs, row)
        self.original = None
        for config in configs:
            drop = config.max_clean_drop if max_clean_drop is None else max_clean_drop
            for value, run_configs in candidates(config):
                runs = [r for r in (collect(c) for c in run_configs) if r is not None]
                if not runs:
                    continue
                self.candidates.append((config, value, run_configs, candidate_row(config, value, runs, drop)))
                if self.original is None and "original" in runs[0]["subsets"]:
                    self.original = original_row(runs[0])
        self.chosen = self._choose(max_clean_drop)

    def _choose(self, max_clean_drop):
        # a swept configuration keeps its chosen strength; then one candidate per method
        kept = [c for c in self.candidates if not c[0].sweep or c[1] == chosen_strength(c[0])]
        chosen = {}
        for method in dict.fromkeys(row["method"] for *_, row in kept):
            group = [c for c in kept if c[3]["method"] == method]
            config = group[0][0]
            drop = config.max_clean_drop if max_clean_drop is None else max_clean_drop
            reference = self.original or {}
            budget = CleanBudget(reference.get("val_clean", float("nan")), drop, self._majority(group))
            index = choose([(c[3]["val_clean"], c[3]["val_attacked"] if np.isfinite(c[3]["val_attacked"])
                             else c[3]["val_clean"]) for c in group], budget)
            chosen[method] = group[index]
        return chosen

    @staticmethod
    def _majority(group):
        run = collect(group[0][2][0])
        return run["mitigation"].get("selection", {}).get("majority_rate", float("nan")) if run else float("nan")

    def rows(self):
        """The original model's row, then the chosen candidate of each method."""
        return ([self.original] if self.original else []) + [c[3] for c in self.chosen.values()]

    def all_rows(self):
        return [c[3] for c in self.candidates]

    def chosen_runs(self):
        """The run configs of every chosen candidate (each seed)."""
        return [run for c in self.chosen.values() for run in c[2]]


def comparison(configs, max_clean_drop=None):
    """(chosen rows with the original first, every candidate's row)."""
    result = Comparison(configs, max_clean_drop)
    return result.rows(), result.all_rows()


def best(rows):
    """The row :data:`BEST_RULE` names, or ``None`` when no correction qualifies."""
    usable = [r for r in rows if r["method"] not in ("original", "Vanilla") and r.get("status") == "ok"]
    return max(usable, key=lambda r: r["val_attacked"] if np.isfinite(r["val_attacked"]) else r["val_clean"],
               default=None)


def significance(rows):
    """Sentences naming the corrections whose clean and attacked accuracy differ from the original's
    (McNemar, p < 0.05 in every seed) and those that do not."""
    corrections = [r for r in rows if r["method"] != "original"]
    sentences = []
    for key, what in (("p_attacked", "Attacked accuracy"), ("p_clean", "Clean accuracy")):
        every_seed = [r["method"] for r in corrections if r.get(f"{key}_significant", 0) == r.get("seeds", 1)
                      and np.isfinite(r.get(key, float("nan")))]
        others = [r["method"] for r in corrections if r["method"] not in every_seed]
        sentences.append(f"{what} differs significantly from the original model's (McNemar, p < {SIGNIFICANCE} in "
                         f"every seed) for: {', '.join(every_seed) or 'none'}; not for: {', '.join(others) or 'none'}.")
    return sentences


# --- tables ---------------------------------------------------------------------------------------
def _cell(row, key):
    value = row.get(key, "")
    if value is None:  # a missing number, as strict JSON read back gives it
        value = float("nan")
    if key in P_VALUES:
        if not isinstance(value, float) or not np.isfinite(value):
            return "—"
        return f"{value:.3g} ({row.get(f'{key}_significant', 0)}/{row.get('seeds', 1)})"
    if key == "status" and row.get("seeds", 1) > 1 and row.get("status_seeds"):
        return f"{value} ({row['status_seeds']})"
    if isinstance(value, float):
        if not np.isfinite(value):
            return "—"
        sd = row.get(f"{key}_sd")
        sd = float("nan") if sd is None or key == "epochs" else sd  # epochs: the same for every seed
        digits = {"seconds": 1, "epochs": 0}.get(key, 3)
        return f"{value:.{digits}f} ± {sd:.{digits}f}" if np.isfinite(sd) else f"{value:.{digits}f}"
    return str(value)


def display_rows(rows, columns=COLUMNS):
    """Rows as text cells: mean ± sd over seeds, p-values with the seeds significant at 0.05, '—' for
    what is not measured or not reported (a collapsed model's improvements)."""
    return [{key: _cell(row, key) for key in columns} for row in rows]


def write_comparison(rows, all_rows, out_dir, name="comparison"):
    """CSV (every number, sds and p-value counts included) and markdown (display cells) of the chosen
    rows and of every candidate."""
    for suffix, table in (("", rows), ("_grid", all_rows)):
        keys = list(dict.fromkeys(k for row in table for k in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys)
        writer.writeheader()
        writer.writerows(table)
        write_text(out_dir / f"{name}{suffix}.csv", buffer.getvalue())
        write_text(out_dir / f"{name}{suffix}.md", markdown_table(display_rows(table), COLUMNS) + "\n")
    return out_dir / f"{name}.md"


def evaluated_models(config) -> dict:
    """The identities of the two models a run's evaluation files describe (corrected and original)."""
    return {"corrected": file_identity(corrected_checkpoint_path(config)), "original": file_identity(config.ckpt_path)}


def stale_evaluations(config) -> bool:
    """Whether the run's evaluation files (if any) were computed from other models than its checkpoints now
    (a correction redone by hand with --overwrite, an original retrained), or by a version that did not say."""
    path = evaluation_dir(config) / EVALUATED
    return not path.is_file() or read_json(path) != evaluated_models(config)


def missing_evaluations(config, everything):
    """The evaluation files a run still lacks (``everything``: also relevance, TCAV and heatmaps); all of
    them when those present are stale."""
    wanted = EVALUATIONS if everything else EVALUATIONS[:1]
    if not corrected_checkpoint_path(config).is_file():
        return list(EVALUATIONS)
    if stale_evaluations(config):
        return list(wanted)
    return [name for name in wanted if not (evaluation_dir(config) / name).is_file()]
