"""Write training configs for your own images (``image_folder``; see README, 'Bring your own images').

Run ``python -m config_files.training.config_generator_training_image_folder``: it writes into
``image_folder/`` beside this script

* ``tiny_vgg_adam_lr0.001.yaml`` -- the default, CPU-sized: tiny_vgg at 64 px for 24 epochs, the
  schedule of the embedded ``synth_derm`` data (minutes on a laptop CPU for a few thousand images);
* ``resnet18_adam_lr0.001.yaml`` -- the large setting: resnet18 at 224 px for 30 epochs (for a GPU;
  about 45 minutes on a laptop CPU even for tiny_vgg at this size).

There is no published controlled setting for your data: set ``ATTACKED`` to add an
``image_folder_attacked`` variant of each. The data root comes from ``data_paths.image_folder`` in
``config_files/local_config.yaml``.
"""
from pathlib import Path

from config_files.generate import grid_configs, write_configs

OUT_DIR = Path(__file__).resolve().parent / "image_folder"

# (fixed keys, grid) per setting
CPU = ({"dataset_name": "image_folder", "img_size": 64, "batch_size": 64, "num_epochs": 24, "milestones": [16, 21],
        "loss": "cross_entropy", "seed": 0},
       {"model_name": ["tiny_vgg"], "optimizer": ["adam"], "lr": [0.001]})
LARGE = ({"dataset_name": "image_folder", "img_size": 224, "batch_size": 32, "num_epochs": 30, "milestones": [20, 25],
          "loss": "cross_entropy", "seed": 0},
         {"model_name": ["resnet18"], "optimizer": ["adam"], "lr": [0.001]})
# e.g. {"dataset_name": "image_folder_attacked", "artifact_type": "band_aid", "attacked_classes": ["benign"],
#       "p_artifact": 0.3}
ATTACKED = None


def main():
    return write_configs({**grid_configs(*CPU, ATTACKED), **grid_configs(*LARGE, ATTACKED)}, OUT_DIR)


if __name__ == "__main__":
    main()
