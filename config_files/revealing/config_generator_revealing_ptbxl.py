"""Write audit (preprocessing + reveal) configs for PTB-XL, published controlled setting.

Run ``python -m config_files.revealing.config_generator_revealing_ptbxl`` (after
``python -m config_files.training.config_generator_training_ptbxl``): one YAML per model (xresnet1d50) and
variant is written into ``ptbxl_attacked/`` beside this script (defective lead in LVH, labels at the subclass level, p = 0.5); see
``attacked.py`` for the keys and ``config_files/published_settings.py`` for the models.
The data root comes from ``data_paths.ptbxl`` in ``config_files/local_config.yaml``.
"""
from config_files.revealing.attacked import write_reveal_configs

DATASET = "ptbxl"


def main():
    return write_reveal_configs(DATASET)


if __name__ == "__main__":
    main()
