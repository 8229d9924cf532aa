"""One configured correction becomes several runs: each value of its ``sweep`` times each of its
``seeds``. Every run is an ordinary single correction (its own config and output folder, named
``<config>-<strength><value>-seed<seed>``); the comparison groups them back into candidates (one per
strength value) and reports each candidate as mean ± sd over its seeds.
"""
from model_training.corrections.base import get_correction_method


def strength_key(config):
    """The config key that sets how strongly ``config.method`` corrects, or ``None``."""
    return get_correction_method(config.method).strength


def strength_of(config):
    key = strength_key(config)
    return None if key is None else getattr(config, key)


def expand(config) -> list:
    """The single runs of ``config`` (itself when it has neither ``sweep`` nor ``seeds``), strength-major."""
    key = strength_key(config)
    runs = []
    for value in config.sweep or [None]:
        for seed in config.seeds or [None]:
            update, name = {"sweep": None, "seeds": None}, config.config_name
            if value is not None:
                update[key] = float(value)
                name += f"-{key}{value:g}"
            if seed is not None:
                update["train_seed"] = int(seed)
                name += f"-seed{seed}"
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
