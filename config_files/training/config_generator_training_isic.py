"""Write training configs for ISIC 2019 (see README, 'Real data sets').

Run ``python -m config_files.training.config_generator_training_isic``: one YAML per model / optimizer /
learning rate (VGG16, ResNet18, ResNet50 and ViT-B/16: ``IMAGE_TRAINING_GRIDS`` in
``config_files/published_settings.py``) is written into ``isic/`` beside this script, plus its
``isic_attacked`` variant with the published controlled setting (microscope in MEL, p = 0.2).
The data root comes from ``data_paths.isic`` in ``config_files/local_config.yaml``.
"""
from pathlib import Path

from config_files.generate import write_configs
from config_files.published_settings import image_training_configs

OUT_DIR = Path(__file__).resolve().parent / "isic"

BASE = {
    "dataset_name": "isic",
    "img_size": 224,
    "batch_size": 32,
    "num_epochs": 50,
    "milestones": [30, 40],
    "loss": "weighted_cross_entropy",  # ISIC is heavily imbalanced (NV dominates)
    "seed": 0,
}
ATTACKED = {"dataset_name": "isic_attacked", "artifact_type": "microscope", "attacked_classes": ["MEL"],
            "p_artifact": 0.2}


def main():
    return write_configs(image_training_configs(BASE, ATTACKED), OUT_DIR)


if __name__ == "__main__":
    main()
