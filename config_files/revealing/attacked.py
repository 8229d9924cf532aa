"""Shared by the revealing config generators of the published controlled settings (``<name>_attacked``).

A generator names its data set and calls :func:`write_reveal_configs`: one audit config
(preprocessing + reveal + bias modelling + localization) per model of
``config_files/published_settings.py`` and variant of ``VARIANTS`` is written into
``<name>_attacked/`` beside this script, ``<model>_<variant>.yaml``; only those files are
(re)written. Each audits the checkpoint of the model's committed ``_attacked`` training config,
whose data keys it copies. As the step-by-step configs of ``synth_derm``, the CAVs are fit on
your annotations (``cav_labels: annotations``, what ``experiments.sample_retrieval.refine``
records); the reveal settings are those chosen on the demo model (``revealing/synth_derm``),
not tuned on these data; layers are each model's default layer.
"""
import itertools
from pathlib import Path

from config_files.generate import write_configs
from config_files.published_settings import MODELS, ckpt_path, data_keys, layer, training_config
from models import get_model_spec

OUT_ROOT = Path(__file__).resolve().parent

BASE = {
    "splits": ["train", "val", "test"],
    "relevance_target": "label",
    "reveal_split": "train",
    "spray_space": "latent",
    "spray_feature": "rel",
    "dora_reference": "sams",
    "dora_aggregation": "max",
    "cav_labels": "annotations",
}
# per modality: batch size of preprocessing; images store input heatmaps at a quarter of 224 px
# (input SpRAy clusters them; full size would take ~0.2 MB per sample), signals at full length
MODALITY = {"image": {"batch_size": 32, "heatmap_size": 56}, "signal": {"batch_size": 64}}
# name suffix -> keys that differ from BASE (the published experiments run SpRAy in latent and input space)
VARIANTS = {
    "default": {},
    "spray_input": {"spray_space": "input"},
}


def reveal_configs(dataset):
    """``{file stem: config}`` of the audit configs of ``<dataset>_attacked``."""
    configs = {}
    for model, (variant, keys) in itertools.product(MODELS[dataset], VARIANTS.items()):
        stem, training = training_config(dataset, model)
        configs[f"{model}_{variant}"] = {
            **data_keys(training), **MODALITY[get_model_spec(model).modality],
            "artifact": training["artifact_type"], **BASE, **keys, "layer_name": layer(model),
            "ckpt_path": ckpt_path(stem, training)}
    return configs


def write_reveal_configs(dataset):
    return write_configs(reveal_configs(dataset), OUT_ROOT / f"{dataset}_attacked")
