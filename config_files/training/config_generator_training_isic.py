"""Write training configs for ISIC 2019 (see README, 'Real data sets').

Run ``python -m config_files.training.config_generator_training_isic``: one YAML per model /
optimizer / learning rate (VGG16, ResNet18 and ResNet50 in ``GRID``, ViT-B/16 in ``VIT_GRID``) is
written into ``isic/`` beside this script, plus its
``isic_attacked`` variant with the published controlled setting (microscope in MEL, p = 0.2).
The data root comes from ``data_paths.isic`` in ``config_files/local_config.yaml``.
"""
from pathlib import Path

from config_files.generate import grid_configs, write_configs

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
GRID = {
    "model_name": ["vgg16", "resnet18", "resnet50"],
    "optimizer": ["sgd"],
    "lr": [0.005],
}
# a vision transformer trained with Adam at a small learning rate (the CNNs' SGD at 0.005 is a setting for
# convolutions); not tuned on this data
VIT_GRID = {
    "model_name": ["vit_b_16"],
    "optimizer": ["adam"],
    "lr": [0.0001],
}
ATTACKED = {"dataset_name": "isic_attacked", "artifact_type": "microscope", "attacked_classes": ["MEL"],
            "p_artifact": 0.2}


def main():
    configs = {**grid_configs(BASE, GRID, ATTACKED), **grid_configs(BASE, VIT_GRID, ATTACKED)}
    return write_configs(configs, OUT_DIR)


if __name__ == "__main__":
    main()
