"""What the config generators share: building a grid of configs and writing named configs into a folder.

Every generator is a module run from the repository root, e.g.
``python -m config_files.training.config_generator_training_synth_derm``. It builds
``{file stem: config}`` and hands it to :func:`write_configs`, which writes ``<stem>.yaml`` into a
folder beside the generator; only those files are (re)written, nothing else is deleted. Configs
hold no paths: data roots come from ``config_files/local_config.yaml`` (``data_paths.<dataset>``).
"""
import itertools
from pathlib import Path

from utils.io import write_text, write_yaml

CONFIG_FILES = Path(__file__).resolve().parent


def config_name(config):
    return f"{config['model_name']}_{config['optimizer']}_lr{config['lr']}"


def grid_configs(base, grid, attacked=None):
    """``{file stem: config}``: ``base`` with every combination of ``grid`` (key -> list of values),
    each followed by its ``<stem>_attacked`` variant when ``attacked`` gives that variant's keys."""
    configs = {}
    for values in itertools.product(*grid.values()):
        config = {**base, **dict(zip(grid, values))}
        configs[config_name(config)] = config
        if attacked:
            configs[f"{config_name(config)}_attacked"] = _attacked_variant(config, attacked)
    return configs


def _attacked_variant(config, attacked):
    # dataset_options are merged, not replaced: the variant keeps the clean task's options
    variant = {**config, **attacked, "dataset_options": {**config.get("dataset_options", {}),
                                                          **attacked.get("dataset_options", {})}}
    if not variant["dataset_options"]:
        del variant["dataset_options"]
    return variant


def write_configs(configs, out_dir):
    """Write ``{file stem: config}`` into ``out_dir`` and print what was written; returns the stems.

    A config is a mapping (dumped as YAML) or a string: YAML text written as it is, for the
    configs that carry comments."""
    for name, config in configs.items():
        path = Path(out_dir) / f"{name}.yaml"
        if isinstance(config, str):
            write_text(path, config)
        else:
            write_yaml(path, config)
    print(f"wrote {len(configs)} configs to {out_dir}: {', '.join(configs)}")
    return list(configs)
