"""Write audit (preprocessing + reveal) configs for CheXpert, published controlled setting.

Run ``python -m config_files.revealing.config_generator_revealing_chexpert`` (after
``python -m config_files.training.config_generator_training_chexpert``): one YAML per model (VGG16, ResNet50 and ViT-B/16) and
variant is written into ``chexpert_attacked/`` beside this script (white colour in cardiomegaly, p = 0.1); see
``attacked.py`` for the keys and ``config_files/published_settings.py`` for the models.
The data root comes from ``data_paths.chexpert`` in ``config_files/local_config.yaml``.
"""
from config_files.revealing.attacked import write_reveal_configs

DATASET = "chexpert"


def main():
    return write_reveal_configs(DATASET)


if __name__ == "__main__":
    main()
