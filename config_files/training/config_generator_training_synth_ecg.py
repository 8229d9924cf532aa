"""Write training configs for the embedded synthetic 12-lead ECG data set.

Run ``python -m config_files.training.config_generator_training_synth_ecg``: one YAML per
model / optimizer / learning rate is written into ``synth_ecg/`` beside this script, plus its
``synth_ecg_attacked`` variant (defective lead in the LVH class at rate 0.5, as for PTB-XL).
"""
from pathlib import Path

from config_files.generate import grid_configs, write_configs

OUT_DIR = Path(__file__).resolve().parent / "synth_ecg"

BASE = {
    "dataset_name": "synth_ecg",
    "batch_size": 64,
    "num_epochs": 12,
    "milestones": [8, 11],
    "loss": "cross_entropy",
    "seed": 0,
}
GRID = {
    "model_name": ["tiny_cnn1d", "xresnet1d50"],
    "optimizer": ["adam"],
    "lr": [0.003],
}
ATTACKED = {"dataset_name": "synth_ecg_attacked", "artifact_type": "defective_lead", "attacked_classes": ["lvh"],
            "p_artifact": 0.5}


def main():
    return write_configs(grid_configs(BASE, GRID, ATTACKED), OUT_DIR)


if __name__ == "__main__":
    main()
