"""Write audit (preprocessing + reveal) configs for ISIC 2019, published controlled setting.

Run ``python config_files/revealing/config_generator_revealing_isic.py`` (after
``config_files/training/config_generator_training_isic.py``): one YAML per model (VGG16, ResNet50 and ViT-B/16) and
variant is written into ``isic_attacked/`` beside this script (microscope in MEL, p = 0.2); see
``attacked.py`` for the keys and ``config_files/published_settings.py`` for the models.
The data root comes from ``data_paths.isic`` in ``config_files/local_config.yaml``.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a plain script from anywhere

from config_files.revealing.attacked import write_reveal_configs  # noqa: E402

DATASET = "isic"


def main():
    return write_reveal_configs(DATASET)


if __name__ == "__main__":
    main()
