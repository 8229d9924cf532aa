"""Write mitigation configs for the published controlled setting of ISIC 2019.

Run ``python -m config_files.bias_mitigation_controlled.config_generator_mitigation_isic_attacked``,
after ``python -m config_files.training.config_generator_training_isic``: one YAML per model (VGG16, ResNet50 and ViT-B/16),
method, layer and strength is written into ``isic_attacked/`` beside this script (microscope in MEL, p = 0.2); see
``attacked.py`` for the methods and keys and ``config_files/published_settings.py`` for the models.
The data root comes from ``data_paths.isic`` in ``config_files/local_config.yaml``.
"""
from config_files.bias_mitigation_controlled.attacked import write_mitigation_configs

DATASET = "isic"


def main():
    return write_mitigation_configs(DATASET)


if __name__ == "__main__":
    main()
