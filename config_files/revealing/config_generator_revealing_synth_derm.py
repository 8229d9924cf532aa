"""Write audit (preprocessing + reveal) configs for the embedded synthetic dermoscopy data set.

Run ``python config_files/revealing/config_generator_revealing_synth_derm.py``: one YAML per model /
variant is written into ``synth_derm/`` beside this script (only those files are rewritten). Each
config audits the checkpoint written by the matching training config
(``config_files/training/synth_derm/<model>_adam_lr0.003.yaml``); ``ckpt_path`` is relative to the
repository root, where every step is run from.
"""
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a plain script from anywhere

from utils.io import write_yaml  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent / "synth_derm"
TRAINING_RUN = "{model}_adam_lr0.003"

BASE = {
    "dataset_name": "synth_derm",
    "img_size": 64,
    "batch_size": 64,
    "seed": 0,
    "artifact": "band_aid",
    "splits": ["train", "val", "test"],
    "relevance_target": "label",
    "heatmap_size": 32,
    "reveal_split": "train",
    "spray_space": "input",
    "spray_feature": "rel",
    "dora_reference": "sams",
    "dora_aggregation": "max",
}
MODELS = {"tiny_vgg": {"layer_name": "features.10"}, "tiny_resnet": {"layer_name": "layer2"}}
# name suffix -> keys that differ from BASE
VARIANTS = {
    "default": {},
    "spray_latent": {"spray_space": "latent"},
    "dora_real_act": {"dora_reference": "real_act"},
}


def main():
    written = []
    for (model, model_keys), (variant, keys) in itertools.product(MODELS.items(), VARIANTS.items()):
        run = TRAINING_RUN.format(model=model)
        config = {**BASE, "model_name": model, **model_keys, **keys,
                  "ckpt_path": f"outputs/training/synth_derm/{model}/{run}/checkpoints/best.pt"}
        name = f"{model}_{variant}"
        write_yaml(OUT_DIR / f"{name}.yaml", config)
        written.append(name)
    print(f"wrote {len(written)} configs to {OUT_DIR}: {', '.join(written)}")


if __name__ == "__main__":
    main()
