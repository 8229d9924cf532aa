"""Write audit (preprocessing + reveal) configs for ISIC 2019, published controlled setting.

Run ``python -m config_files.revealing.config_generator_revealing_isic`` (after
``python -m config_files.training.config_generator_training_isic``): one YAML per model (VGG16, ResNet50 and ViT-B/16) and
variant is written into ``isic_attacked/`` beside this script (microscope in MEL, p = 0.2); see
``attacked.py`` for the keys and ``config_files/published_settings.py`` for the models.
The data root comes from ``data_paths.isic`` in ``config_files/local_config.yaml``.
"""
from config_files.revealing.attacked import write_reveal_configs

DATASET = "isic"


def main():
    return write_reveal_configs(DATASET)


if __name__ == "__main__":
    main()
