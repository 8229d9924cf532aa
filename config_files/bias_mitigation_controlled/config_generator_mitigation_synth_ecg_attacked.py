"""Write mitigation configs for the published controlled setting of the embedded synthetic 12-lead ECG data.

Run ``python -m config_files.bias_mitigation_controlled.config_generator_mitigation_synth_ecg_attacked``,
after ``python -m config_files.training.config_generator_training_synth_ecg``: one YAML per model (xresnet1d50),
method, layer and strength is written into ``synth_ecg_attacked/`` beside this script (defective lead in lvh, p = 0.5); see
``attacked.py`` for the methods and keys and ``config_files/published_settings.py`` for the models.
The data are embedded: no data root.
"""
from config_files.bias_mitigation_controlled.attacked import write_mitigation_configs

DATASET = "synth_ecg"


def main():
    return write_mitigation_configs(DATASET)


if __name__ == "__main__":
    main()
