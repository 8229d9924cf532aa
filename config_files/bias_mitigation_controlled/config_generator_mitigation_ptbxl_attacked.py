"""Write mitigation configs for the published controlled setting of PTB-XL.

Run ``python -m config_files.bias_mitigation_controlled.config_generator_mitigation_ptbxl_attacked``,
after ``python -m config_files.training.config_generator_training_ptbxl``: one YAML per model (xresnet1d50),
method, layer and strength is written into ``ptbxl_attacked/`` beside this script (defective lead in LVH, labels at the subclass level, p = 0.5); see
``attacked.py`` for the methods and keys and ``config_files/published_settings.py`` for the models.
The data root comes from ``data_paths.ptbxl`` in ``config_files/local_config.yaml``.
"""
from config_files.bias_mitigation_controlled.attacked import write_mitigation_configs

DATASET = "ptbxl"


def main():
    return write_mitigation_configs(DATASET)


if __name__ == "__main__":
    main()
