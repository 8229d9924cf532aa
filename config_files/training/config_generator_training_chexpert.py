"""Write training configs for CheXpert, binary cardiomegaly (see README, 'Real data sets').

Run ``python config_files/training/config_generator_training_chexpert.py``: one YAML per model /
optimizer / learning rate (VGG16, ResNet18 and ResNet50 in ``GRID``, ViT-B/16 in ``VIT_GRID``) is
written into ``chexpert/`` beside this script, plus its
``chexpert_attacked`` variant with the published controlled setting (white colour in cardiomegaly, p = 0.1).
The data root comes from ``data_paths.chexpert`` in ``config_files/local_config.yaml``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a plain script from anywhere

from config_files.training.grid import write_grid  # noqa: E402

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
    return write_grid(OUT_DIR, BASE, GRID, ATTACKED) + write_grid(OUT_DIR, BASE, VIT_GRID, ATTACKED)


if __name__ == "__main__":
    main()
