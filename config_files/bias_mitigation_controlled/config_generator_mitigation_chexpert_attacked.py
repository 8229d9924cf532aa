"""Write mitigation configs for the published controlled setting of CheXpert.

Run ``python -m config_files.bias_mitigation_controlled.config_generator_mitigation_chexpert_attacked``,
after ``python -m config_files.training.config_generator_training_chexpert``: one YAML per model (VGG16, ResNet50 and ViT-B/16),
method, layer and strength is written into ``chexpert_attacked/`` beside this script (white colour in cardiomegaly, p = 0.1); see
``attacked.py`` for the methods and keys and ``config_files/published_settings.py`` for the models.
The data root comes from ``data_paths.chexpert`` in ``config_files/local_config.yaml``.
"""
from config_files.bias_mitigation_controlled.attacked import write_mitigation_configs

DATASET = "chexpert"


def main():
    return write_mitigation_configs(DATASET)


if __name__ == "__main__":
    main()
