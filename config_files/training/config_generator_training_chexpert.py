"""Write training configs for CheXpert, binary cardiomegaly (see README, 'Real data sets').

Run ``python -m config_files.training.config_generator_training_chexpert``: one YAML per model / optimizer /
learning rate (VGG16, ResNet18, ResNet50 and ViT-B/16: ``IMAGE_TRAINING_GRIDS`` in
``config_files/published_settings.py``) is written into ``chexpert/`` beside this script, plus its
``chexpert_attacked`` variant with the published controlled setting (white colour in cardiomegaly, p = 0.1).
The data root comes from ``data_paths.chexpert`` in ``config_files/local_config.yaml``.
"""
from pathlib import Path

from config_files.generate import write_configs
from config_files.published_settings import image_training_configs

OUT_DIR = Path(__file__).resolve().parent / "chexpert"

BASE = {
    "dataset_name": "chexpert",
    "dataset_options": {"target": "Cardiomegaly", "uncertain": "zeros", "frontal_only": True},
    "img_size": 224,
    "batch_size": 32,
    "num_epochs": 30,
    "milestones": [20, 25],
    "loss": "weighted_cross_entropy",
    "seed": 0,
}
ATTACKED = {"dataset_name": "chexpert_attacked", "artifact_type": "white_color", "attacked_classes": ["cardiomegaly"],
            "p_artifact": 0.1}


def main():
    return write_configs(image_training_configs(BASE, ATTACKED), OUT_DIR)


if __name__ == "__main__":
    main()
