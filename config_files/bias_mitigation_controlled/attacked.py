"""Shared by the mitigation config generators of the published controlled settings (``<name>_attacked``).

A generator names its data set and calls :func:`write_mitigation_configs`: one YAML per model of
``config_files/published_settings.py`` and entry of :func:`grid` is written into
``<name>_attacked/`` beside this script, ``<model>_<method>_<suffix>.yaml`` (only those files are
(re)written). The data and model keys and the loss are copied from the model's committed
``_attacked`` training config, so both always agree; ``ckpt_path`` is the checkpoint it writes.
Then run every correction and evaluation of a folder and its comparison tables with
``python -m experiments.evaluation.compare_methods --config_dir config_files/bias_mitigation_controlled/<name>_attacked --run``.

The methods are those of the published experiments, RRR, RR-ClArC, P-ClArC and reactive P-ClArC,
plus plain fine-tuning (Vanilla), each at the model's default layer. ISNet is left out: it needs
foreground masks, which these data sets do not have. For vision transformers only what can train
them is written (no differentiable LRP for attention: RRR explains with the input gradient).

Strengths are swept (three values spaced by 10x, chosen on the validation split by the mitigation
step, every strength trained in full), because they were not measured on these models: RRR's
penalties here are shares in [0, 1], O(1) like the cross-entropy, so the sweep of the demo
transfers; RR-ClArC's squared directional gradient depends on the layer's scale, so its sweep (the
demo's, sized on tiny_vgg) may need widening. Fine-tuning uses the training config's optimizer at a
tenth of its learning rate; epochs and evaluation caps are not tuned.
"""
from pathlib import Path

from config_files.generate import write_configs
from config_files.published_settings import (DATA_KEYS, MODELS, ckpt_path, data_keys, differentiable_lrp, layer,
                                             training_config)

OUT_ROOT = Path(__file__).resolve().parent

# validation numbers come from the mitigation step, so the evaluation steps need only the test split
FINE_TUNING = {"num_epochs": 10, "milestones": [], "eval_max_samples": 500, "eval_splits": ["test"]}
SWEEPS = {"RRR": {"lamb": 1.0, "sweep": [0.1, 1.0, 10.0]}, "RRClarc": {"lamb": 1e4, "sweep": [1e3, 1e4, 1e5]}}


def grid(model):
    """``[(method, config name suffix, keys)]`` for ``model``."""
    at = layer(model)
    entries = [("Vanilla", at, {"layer_name": at}),
               ("Vanilla", "unfrozen", {"freeze": False}),
               # the input gradient explains every model; the share of |grad| in the mask is scale-free
               ("RRR", "unfrozen_gradient_share_sweep", {"freeze": False, "rrr_explanation": "gradient",
                                                          "rrr_penalty": "share", **SWEEPS["RRR"]})]
    if differentiable_lrp(model):
        # the heatmap of the model's own composite: the penalty is the evaluation's artifact relevance
        entries.append(("RRR", "unfrozen_composite_sweep", {"freeze": False, "rrr_explanation": "lrp_composite",
                                                            "rrr_penalty": "positive_share", **SWEEPS["RRR"]}))
    # RR-ClArC penalises the spatially (or token-) averaged gradient: a CAV of mean-pooled activations
    entries.append(("RRClarc", f"{at}_sweep", {"layer_name": at, "cav_mode": "cavs_mean", **SWEEPS["RRClarc"]}))
    for method in ("PClarc", "ReactivePClarc"):
        entries += [(method, at, {"layer_name": at}),
                    (method, f"{at}_mean", {"layer_name": at, "cav_mode": "cavs_mean"})]
    return entries


def fine_tuning(training):
    """The fine-tuning keys of a correction of the model ``training`` trains."""
    return {"optimizer": training["optimizer"], "lr": round(training["lr"] / 10, 12), **FINE_TUNING,
            "batch_size": training["batch_size"], "loss": training["loss"]}


def mitigation_configs(dataset):
    """``{file stem: config}`` of the mitigation configs of ``<dataset>_attacked``."""
    configs = {}
    for model in MODELS[dataset]:
        stem, training = training_config(dataset, model)
        base = {**data_keys(training, DATA_KEYS), **fine_tuning(training), "artifact": training["artifact_type"],
                "ckpt_path": ckpt_path(stem, training)}
        for method, suffix, keys in grid(model):
            configs[f"{model}_{method}_{suffix}"] = {**base, "method": method, **keys}
    return configs


def write_mitigation_configs(dataset):
    return write_configs(mitigation_configs(dataset), OUT_ROOT / f"{dataset}_attacked")
