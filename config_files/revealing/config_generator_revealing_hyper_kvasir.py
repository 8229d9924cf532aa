"""Write audit (preprocessing + reveal) configs for HyperKvasir, published controlled setting.

Run ``python -m config_files.revealing.config_generator_revealing_hyper_kvasir`` (after
``python -m config_files.training.config_generator_training_hyper_kvasir``): one YAML per model (VGG16, ResNet50 and ViT-B/16) and
variant is written into ``hyper_kvasir_attacked/`` beside this script (timestamp in disease, p = 0.1); see
``attacked.py`` for the keys and ``config_files/published_settings.py`` for the models.
The data root comes from ``data_paths.hyper_kvasir`` in ``config_files/local_config.yaml``.
"""
from config_files.revealing.attacked import write_reveal_configs

DATASET = "hyper_kvasir"


def main():
    return write_reveal_configs(DATASET)


if __name__ == "__main__":
    main()
