"""Write training configs for your own images (``image_folder``; see README, 'Bring your own images').

Run ``python config_files/training/config_generator_training_image_folder.py``: one YAML per model /
optimizer / learning rate is written into ``image_folder/`` beside this script.
There is no published controlled setting for your data: set ``ATTACKED`` to add an
``image_folder_attacked`` variant.
The data root comes from ``data_paths.image_folder`` in ``config_files/local_config.yaml``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a plain script from anywhere

from config_files.training.grid import write_grid  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent / "image_folder"

BASE = {
    "dataset_name": "image_folder",
    "img_size": 224,
    "batch_size": 32,
    "num_epochs": 30,
    "milestones": [20, 25],
    "loss": "cross_entropy",
    "seed": 0,
}
GRID = {
    "model_name": ["resnet18", "tiny_vgg"],
    "optimizer": ["adam"],
    "lr": [0.001],
}
# e.g. {"dataset_name": "image_folder_attacked", "artifact_type": "band_aid", "attacked_classes": ["benign"],
#       "p_artifact": 0.3}
ATTACKED = None


def main():
    return write_grid(OUT_DIR, BASE, GRID, ATTACKED)


if __name__ == "__main__":
    main()
