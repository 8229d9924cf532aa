"""One configured correction becomes several runs: each value of its ``sweep`` times each of its
``seeds``. Every run is an ordinary single correction (its own config and output folder, named
``<config>-<strength><value>-seed<seed>``); the comparison groups them back into candidates (one per
strength value) and reports each candidate as mean ± sd over its seeds.

The strength of a sweep is chosen on the validation split by the selection rule
(:mod:`model_training.corrections.selection`), on the mean over seeds. With ``sweep_epochs`` every
strength is first trained for that many epochs, the choice is made on their validation numbers at
that epoch, and only the chosen strength's runs continue to ``num_epochs`` (resumed from their last
epoch, in the same folders): a cheaper sweep, e.g. for the demo.
"""
import numpy as np

from model_training.corrections.base import get_correction_method
from model_training.corrections.run import corrected_checkpoint_path, correction_inputs, mitigation_dir, run_correction
from model_training.corrections.selection import CleanBudget, choose, clean_subset, target_subset
from utils.identity import file_identity
from utils.io import read_json


def strength_key(config):
    """The config key that sets how strongly ``config.method`` corrects, or ``None``."""
    return get_correction_method(config.method).strength


def strength_of(config):
    key = strength_key(config)
    return None if key is None else getattr(config, key)


def short_sweep(config):
    """Whether the strengths of ``config`` are first compared after fewer epochs."""
    return bool(config.sweep) and config.sweep_epochs is not None and config.sweep_epochs < config.num_epochs


def expand(config, epochs=None) -> list:
    """The single runs of ``config`` (itself when it has neither ``sweep`` nor ``seeds``), strength-major;
    ``epochs``: train them for that many epochs (the short phase of a sweep)."""
    key = strength_key(config)
    runs = []
    for value in config.sweep or [None]:
        for seed in config.seeds or [None]:
            update, name = {"sweep": None, "seeds": None, "sweep_epochs": None}, config.config_name
            if value is not None:
                update[key] = float(value)
                name += f"-{key}{value:g}"
            if seed is not None:
                update["train_seed"] = int(seed)
                name += f"-seed{seed}"
            if epochs is not None:
                update["num_epochs"] = epochs
            run = config.model_copy(update={**update, "config_name": name})
            run._source_file = config._source_file
            runs.append(run)
    return runs


def candidates(config) -> list:
    """The runs of ``config`` grouped by strength value: ``[(value, [run, ...]), ...]`` in sweep order."""
    groups = {}
    for run in expand(config):
        groups.setdefault(strength_of(run), []).append(run)
    return list(groups.items())


def run_metrics(run):
    """The mitigation step's ``metrics.json`` of a run, or ``None`` when the run must be (re)done: the file
    or ``corrected.pt`` is missing; it was written by an older version (no selection record, no recorded
    inputs); the original checkpoint or localization masks it started from have changed since (another
    model trained into the same path); or ``corrected.pt`` is not the file the run saved (replaced or
    damaged). The single place that decides whether a finished correction can be reused."""
    path = mitigation_dir(run, create=False) / "metrics.json"
    corrected = corrected_checkpoint_path(run)
    if not corrected.is_file() or not path.is_file():
        return None
    metrics = read_json(path)
    if "selection" not in metrics or "inputs" not in metrics:
        return None
    recorded = {k: v for k, v in metrics["inputs"].items() if k != "data"}  # the data: keyed by the settings
    if recorded != correction_inputs(run) or metrics.get("corrected") != file_identity(corrected):
        return None
    return metrics


def epochs_trained(metrics):
    return len(metrics.get("history", []))


def validation_at(metrics, epoch=None):
    """(clean, target) validation accuracy of a run: at ``epoch`` of its history, or of the kept model."""
    if epoch is None:
        val = metrics["selection"]["val"]
        return val[clean_subset(val)], val[target_subset(val)]
    row = metrics["history"][epoch - 1]
    clean = row.get("val_clean", row.get("val_ch"))
    target = row.get("val_attacked", row.get("val_ch"))
    return clean, target


def chosen_strength(config, metrics_of=run_metrics):
    """The strength the selection rule keeps for a swept ``config`` (``None`` until every run of the
    sweep, at its comparison epoch, is there)."""
    epoch = config.sweep_epochs if short_sweep(config) else None
    pairs, values = [], []
    for value, runs in candidates(config):
        metrics = [metrics_of(run) for run in runs]
        if any(m is None or (epoch is not None and epochs_trained(m) < epoch) for m in metrics):
            return None
        pairs.append(tuple(np.mean([validation_at(m, epoch) for m in metrics], axis=0)))
        values.append(value)
    selection = metrics[0]["selection"]
    original = selection["original_val"]
    budget = CleanBudget(original[clean_subset(original)], config.max_clean_drop, selection["majority_rate"])
    return values[choose(pairs, budget)]


def correct(config, log=print) -> list:
    """Run every correction ``config`` needs (see the module docstring); returns the runs that were
    (re)trained, whose evaluations are therefore stale."""
    trained = []

    def ensure(run, continuing=False):
        if run_metrics(run) is None or (continuing and epochs_trained(run_metrics(run)) < run.num_epochs):
            log(f"correcting {run.config_name}")
            # a run stopped midway continues from its last epoch; one of other settings or inputs starts afresh
            run_correction(run, overwrite=True, resume=True, strict_resume=False)
            trained.append(run)

    if not short_sweep(config):
        for run in expand(config):
            ensure(run)
        return trained
    for run in expand(config, epochs=config.sweep_epochs):
        ensure(run)
    value = chosen_strength(config)
    for run in expand(config):
        if strength_of(run) == value:
            ensure(run, continuing=True)  # continue from the sweep's last epoch to num_epochs
    return trained
