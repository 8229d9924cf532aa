"""Write audit (preprocessing + reveal) configs for the embedded synthetic 12-lead ECG data set, published controlled setting.

Run ``python -m config_files.revealing.config_generator_revealing_synth_ecg`` (after
``python -m config_files.training.config_generator_training_synth_ecg``): one YAML per model (xresnet1d50) and
variant is written into ``synth_ecg_attacked/`` beside this script (defective lead in lvh, p = 0.5); see
``attacked.py`` for the keys and ``config_files/published_settings.py`` for the models.
The data are embedded: no data root.
"""
from config_files.revealing.attacked import write_reveal_configs

DATASET = "synth_ecg"


def main():
    return write_reveal_configs(DATASET)


if __name__ == "__main__":
    main()
