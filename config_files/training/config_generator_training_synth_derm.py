"""Write training configs for the embedded synthetic dermoscopy data set.

Run ``python -m config_files.training.config_generator_training_synth_derm``: one YAML per
model / optimizer / learning-rate combination is written into ``synth_derm/`` beside this script.
Only those files are (re)written; nothing else is deleted.
"""
from pathlib import Path

from config_files.generate import grid_configs, write_configs

OUT_DIR = Path(__file__).resolve().parent / "synth_derm"

BASE = {
    "dataset_name": "synth_derm",
    "img_size": 64,
    "batch_size": 64,
    "num_epochs": 24,
    "milestones": [16, 21],
    "loss": "cross_entropy",
    "seed": 0,
}
GRID = {
    "model_name": ["tiny_vgg", "tiny_resnet"],
    "optimizer": ["adam"],
    "lr": [0.003],
}


def main():
    return write_configs(grid_configs(BASE, GRID), OUT_DIR)


if __name__ == "__main__":
    main()
