"""Write audit (preprocessing + reveal) configs for the embedded synthetic dermoscopy data set.

Run ``python -m config_files.revealing.config_generator_revealing_synth_derm``: it writes every
committed YAML of ``synth_derm/`` beside this script (and only those files):

* ``<model>_<variant>.yaml``: the reveal configs (``default`` and the variants in ``VARIANTS``),
  also the configs of the step-by-step audit: their CAVs are fit on your annotations
  (``cav_labels: annotations``, what ``experiments.sample_retrieval.refine`` records);
* ``tiny_vgg_features.<n>.yaml``: the layer sweep of bias modelling / localization (one file per
  layer of tiny_vgg, with the localization settings measured on this data). These reproduce a
  controlled experiment, so their CAVs are fit on the ground truth (``cav_labels: ground_truth``).

Each config audits the checkpoint written by the matching training config
(``config_files/training/synth_derm/<model>_adam_lr0.003.yaml``); ``ckpt_path`` is relative to the
repository root, where every step is run from.
"""
import itertools
from pathlib import Path

import yaml

from config_files.generate import write_configs

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
    # chosen by measurement on the demo model (see the README of experiments/reveal): SpRAy on the
    # relevances of layer_name found a band-aid cluster, on input heatmaps it did not; the band-aid
    # neurons sit in the last conv block, so DORA and CRP rank the neurons of neuron_layer_name
    "spray_space": "latent",
    "spray_feature": "rel",
    "dora_reference": "sams",
    "dora_aggregation": "max",
    # the step-by-step audit fits its CAVs on the reviewer's decisions (refine), as the pipeline does
    "cav_labels": "annotations",
}
MODELS = {"tiny_vgg": {"layer_name": "features.10", "neuron_layer_name": "features.14"},
          "tiny_resnet": {"layer_name": "layer2"}}
# name suffix -> keys that differ from BASE
VARIANTS = {
    "default": {},
    "spray_input": {"spray_space": "input"},
    "dora_real_act": {"dora_reference": "real_act"},
}



# --- localization settings per layer of tiny_vgg, chosen on the val split (experiments/localization/README.md) ---
SWEEP_MODEL = "tiny_vgg"
SWEEP_LAYERS = ("features.2", "features.6", "features.10", "features.14")
SWEEP_HEADER = ("# Audit of the band-aid shortcut at layer {layer} of tiny_vgg (localization layer sweep).\n"
                "# Run preprocessing with this file first; the CAV is fit on its train split.\n"
                "# A controlled experiment: the CAV's labels are the data set's ground truth (cav_labels),\n"
                "# not annotations; see experiments/localization/README.md.\n")
SWEEP_COMMENT = ("# localization settings chosen on the val split (see experiments/localization/README.md):\n"
                 "# a CAV of the layer, the model's own rules, initial relevance gated by a threshold calibrated on\n"
                 "# artifact-free training samples, Otsu masks of the square-rooted heatmap, closed and hole-filled\n")
# layer -> (CAV type, initial relevance, gate quantile); features.10 re-chosen on the val split for
# the demo model with the tan band-aid, the other layers' settings are those chosen for the earlier
# skin-toned one (experiments/localization/README.md)
LOCALIZATION_BY_LAYER = {"features.2": ("signal", "position_gated", 0.9),
                         "features.6": ("signal", "position_gated", 0.98),
                         "features.10": ("svm", "peak_region", 0.98),
                         "features.14": ("signal", "peak_region", 0.95)}


def localization_keys(layer):
    cav_type, init, quantile = LOCALIZATION_BY_LAYER[layer]
    return {"localization_cav_type": cav_type, "localization_composite": "epsilon_plus_flat",
            "localization_init": init, "localization_gate_quantile": quantile, "mask_threshold": "otsu",
            "mask_power": 0.5, "mask_blur_kernel": 7, "mask_blur_sigma": 8, "mask_closing": 10,
            "mask_fill_holes": True}


# the reveal configs of tiny_vgg localize at their own layer with that layer's settings
MODELS["tiny_vgg"] = {**MODELS["tiny_vgg"], **localization_keys(MODELS["tiny_vgg"]["layer_name"])}


def _ckpt(model):
    return f"outputs/training/synth_derm/{model}/{TRAINING_RUN.format(model=model)}/checkpoints/best.pt"


def _dump(mapping):
    return yaml.safe_dump(mapping, sort_keys=False)


def sweep_config_text(layer):
    """The YAML text of the layer-sweep config of ``layer`` (with its comments)."""
    head = {"dataset_name": "synth_derm", "img_size": 64, "seed": 0, "model_name": SWEEP_MODEL,
            "ckpt_path": _ckpt(SWEEP_MODEL), "layer_name": layer, "batch_size": 64, "artifact": "band_aid",
            "cav_labels": "ground_truth"}
    return SWEEP_HEADER.format(layer=layer) + _dump(head) + SWEEP_COMMENT + _dump(localization_keys(layer))


def reveal_configs():
    """``{file stem: config}`` of the reveal configs."""
    configs = {}
    for (model, model_keys), (variant, keys) in itertools.product(MODELS.items(), VARIANTS.items()):
        configs[f"{model}_{variant}"] = {**BASE, "model_name": model, **model_keys, **keys, "ckpt_path": _ckpt(model)}
    return configs


def sweep_configs():
    """``{file stem: YAML text}`` of the layer-sweep configs (text, as they carry comments)."""
    return {f"{SWEEP_MODEL}_{layer}": sweep_config_text(layer) for layer in SWEEP_LAYERS}


def main():
    return write_configs({**reveal_configs(), **sweep_configs()}, OUT_DIR)


if __name__ == "__main__":
    main()
