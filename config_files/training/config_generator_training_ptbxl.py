"""Write training configs for PTB-XL, 100 Hz, multi-label (see README, 'Real data sets').

Run ``python -m config_files.training.config_generator_training_ptbxl``: one YAML per model /
optimizer / learning rate is written into ``ptbxl/`` beside this script, plus its
``ptbxl_attacked`` variant with the published controlled setting (defective lead in LVH, p = 0.5;
labels at the subclass level, where LVH is a class).
The data root comes from ``data_paths.ptbxl`` in ``config_files/local_config.yaml``.
"""
from pathlib import Path

from config_files.generate import grid_configs, write_configs

OUT_DIR = Path(__file__).resolve().parent / "ptbxl"

BASE = {
    "dataset_name": "ptbxl",
    "dataset_options": {"sampling_rate": 100, "label_level": "superclass"},
    "batch_size": 64,
    "num_epochs": 30,
    "milestones": [20, 25],
    "loss": "bce",  # multi-label: one sigmoid per diagnostic class
    "seed": 0,
}
GRID = {
    "model_name": ["xresnet1d50", "tiny_cnn1d"],
    "optimizer": ["adam"],
    "lr": [0.001],
}
ATTACKED = {"dataset_name": "ptbxl_attacked", "dataset_options": {"label_level": "subclass"},
            "artifact_type": "defective_lead", "attacked_classes": ["LVH"], "p_artifact": 0.5}


def main():
    return write_configs(grid_configs(BASE, GRID, ATTACKED), OUT_DIR)


if __name__ == "__main__":
    main()
