"""Write mitigation configs for the published controlled setting of HyperKvasir.

Run ``python -m config_files.bias_mitigation_controlled.config_generator_mitigation_hyper_kvasir_attacked``,
after ``python -m config_files.training.config_generator_training_hyper_kvasir``: one YAML per model (VGG16, ResNet50 and ViT-B/16),
method, layer and strength is written into ``hyper_kvasir_attacked/`` beside this script (timestamp in disease, p = 0.1); see
``attacked.py`` for the methods and keys and ``config_files/published_settings.py`` for the models.
The data root comes from ``data_paths.hyper_kvasir`` in ``config_files/local_config.yaml``.
"""
from config_files.bias_mitigation_controlled.attacked import write_mitigation_configs

DATASET = "hyper_kvasir"


def main():
    return write_mitigation_configs(DATASET)


if __name__ == "__main__":
    main()
