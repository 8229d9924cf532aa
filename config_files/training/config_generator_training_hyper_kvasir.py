"""Write training configs for HyperKvasir, disease vs non-disease (see README, 'Real data sets').

Run ``python -m config_files.training.config_generator_training_hyper_kvasir``: one YAML per model /
optimizer / learning rate (VGG16, ResNet18, ResNet50 and ViT-B/16: ``IMAGE_TRAINING_GRIDS`` in
``config_files/published_settings.py``) is written into ``hyper_kvasir/`` beside this script, plus its
``hyper_kvasir_attacked`` variant with the published controlled setting (timestamp in disease, p = 0.1).
The data root comes from ``data_paths.hyper_kvasir`` in ``config_files/local_config.yaml``.
"""
from pathlib import Path

from config_files.generate import write_configs
from config_files.published_settings import image_training_configs

OUT_DIR = Path(__file__).resolve().parent / "hyper_kvasir"

BASE = {
    "dataset_name": "hyper_kvasir",
    "dataset_options": {"task": "disease"},
    "img_size": 224,
    "batch_size": 32,
    "num_epochs": 30,
    "milestones": [20, 25],
    "loss": "cross_entropy",
    "seed": 0,
}
ATTACKED = {"dataset_name": "hyper_kvasir_attacked", "artifact_type": "timestamp", "attacked_classes": ["disease"],
            "p_artifact": 0.1}


def main():
    return write_configs(image_training_configs(BASE, ATTACKED), OUT_DIR)


if __name__ == "__main__":
    main()
