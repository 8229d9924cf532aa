"""Write training configs for CheXpert, binary cardiomegaly (see README, 'Real data sets').

Run ``python -m config_files.training.config_generator_training_chexpert``: one YAML per model /
optimizer / learning rate (VGG16, ResNet18 and ResNet50 in ``GRID``, ViT-B/16 in ``VIT_GRID``) is
written into ``chexpert/`` beside this script, plus its
``chexpert_attacked`` variant with the published controlled setting (white colour in cardiomegaly, p = 0.1).
The data root comes from ``data_paths.chexpert`` in ``config_files/local_config.yaml``.
"""
from pathlib import Path

from config_files.generate import grid_configs, write_configs

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
ATTACKED = {"dataset_name": "chexpert_attacked", "artifact_type": "white_color", "attacked_classes": ["cardiomegaly"],
            "p_artifact": 0.1}


def main():
    configs = {**grid_configs(BASE, GRID, ATTACKED), **grid_configs(BASE, VIT_GRID, ATTACKED)}
    return write_configs(configs, OUT_DIR)


if __name__ == "__main__":
    main()
