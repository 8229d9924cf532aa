"""Shared by the training config generators: one YAML per combination of a grid of values.

A generator declares ``BASE`` (fixed keys), ``GRID`` (key -> list of values) and optionally
``ATTACKED`` (the keys of its ``<dataset>_attacked`` variant) and calls :func:`write_grid`.
Only the files it names are (re)written; nothing else is deleted. Configs hold no paths: data
roots come from ``config_files/local_config.yaml`` (``data_paths.<dataset>``).
"""
import itertools
from pathlib import Path

from utils.io import write_yaml


def config_name(config):
    return f"{config['model_name']}_{config['optimizer']}_lr{config['lr']}"


def write_grid(out_dir, base, grid, attacked=None):
    """Write every combination of ``grid`` over ``base`` (and its attacked variant) into ``out_dir``."""
    out_dir, written = Path(out_dir), []
    for values in itertools.product(*grid.values()):
        config = {**base, **dict(zip(grid, values))}
        variants = [(config_name(config), config)]
        if attacked:
            attacked_config = {**config, **attacked,
                               "dataset_options": {**config.get("dataset_options", {}),
                                                   **attacked.get("dataset_options", {})}}
            if not attacked_config["dataset_options"]:
                del attacked_config["dataset_options"]
            variants.append((f"{config_name(config)}_attacked", attacked_config))
        for name, variant in variants:
            write_yaml(out_dir / f"{name}.yaml", variant)
            written.append(name)
    print(f"wrote {len(written)} configs to {out_dir}: {', '.join(written)}")
    return written
