"""Write the configs of the whole audit (``python -m experiments.run_pipeline --config_file F``).

Run ``python -m config_files.pipeline.config_generator_pipeline``: one YAML per audit is written
beside this script (only those files are rewritten).

* ``synth_derm.yaml`` — the default audit that ``make demo`` runs: the band-aid shortcut of the
  embedded dermoscopy data. Its keys are copied from the committed per-step configs (training,
  revealing, mitigation grid), so the pipeline and the step-by-step runs of the README agree, except
  one: it trains and corrects in channels-last memory order (:data:`DEMO_LAYOUT`), about 1.4x faster
  on a CPU. That rounds otherwise, so its model is not bit for bit the step-by-step run's, but the
  headline over training seeds is the same (``python -m experiments.benchmarks.headline_seeds``).
* ``synth_ecg.yaml`` — the same audit on the embedded 12-lead ECG data (defective-lead shortcut).
* ``image_folder.yaml`` — the same audit on your own images (``dataset_name: image_folder``; the
  data root comes from ``data_paths.image_folder`` in ``config_files/local_config.yaml``). Try it on
  an export of the embedded data first:
  ``python -m datasets.export_image_folder --config_file config_files/training/synth_derm/tiny_vgg_adam_lr0.003.yaml --out outputs/example_image_folder``.

A pipeline config has the shared keys at the top and one section per step (``training``,
``audit``, ``annotation``, ``mitigation_common``, ``mitigation``); see ``utils/pipeline/config.py``.
"""
from pathlib import Path

import yaml

from config_files.generate import CONFIG_FILES, write_configs
from utils.config.schemas import BaseConfig

OUT_DIR = Path(__file__).resolve().parent
SHARED = set(BaseConfig.model_fields) - {"config_name", "ckpt_path", "output_dir"}
# the pipeline trains (or loads) its own model and passes its checkpoint to every later step
NOT_COPIED = {"ckpt_path", "output_dir", "config_name"}
# the pipeline's annotate step decides where the CAV's labels come from: its reviewer's decisions
# (annotation.simulate) or the recorded annotation_file, never the per-step config's cav_labels
NOT_COPIED_TO_AUDIT = {"cav_labels"}
# keys every correction run of a pipeline shares (fine-tuning schedule, evaluation sample cap)
COMMON_MITIGATION_KEYS = ("optimizer", "lr", "num_epochs", "milestones", "eval_max_samples", "eval_splits",
                          "max_clean_drop")

# the demo trains and corrects in channels-last order (README, "Memory layout"); the other pipelines keep the
# default layout, so their published numbers stay those of the per-step configs
DEMO_LAYOUT = {"memory_format": "channels_last"}

SYNTH_DERM = {
    "training": "training/synth_derm/tiny_vgg_adam_lr0.003.yaml",
    "audit": "revealing/synth_derm/tiny_vgg_default.yaml",
    # one run per method of config_files/bias_mitigation_controlled/synth_derm/, each at the model's
    # default layer; a method with a strength sweeps it (chosen on the validation split by the
    # mitigation step; see the mitigation README)
    "mitigation_dir": "bias_mitigation_controlled/synth_derm",
    "mitigation": ["Vanilla_features.10", "RRR_unfrozen_composite_sweep", "RRClarc_features.10_sweep",
                   "PClarc_features.10_mean", "ReactivePClarc_features.10_mean", "ISNet_selective_sweep"],
    "annotation": {"seed_from": "spray", "n_seeds": 5},
}

SYNTH_ECG = {
    "training": "training/synth_ecg/tiny_cnn1d_adam_lr0.003.yaml",
    "shared": {"artifact": "defective_lead"},
    "audit": {"heatmap_size": None},
    "annotation": {"seed_from": "spray", "n_seeds": 5},
    "mitigation_common": {"optimizer": "adam", "lr": 0.0005, "num_epochs": 2, "milestones": [],
                          "eval_max_samples": 200, "eval_splits": ["test"], "max_clean_drop": 0.03},
    # the default mitigation of synth_derm at the model's default layer; no foreground masks for
    # ECGs, hence no ISNet
    "mitigation_from": "synth_derm",
    "without": ("ISNet",),
    # the model's own default layer; and every strength trained in full: on the ECG, RR-ClArC's strengths
    # compared after one epoch rank otherwise than after two (config_generator_mitigation_synth_derm.py)
    "not_copied": ("layer_name", "sweep_epochs"),
}

IMAGE_FOLDER = {
    "training": "training/image_folder/tiny_vgg_adam_lr0.001.yaml",
    "shared": {"img_size": 64, "artifact": "band_aid"},
    "training_overrides": {"num_epochs": 24, "milestones": [16, 21], "lr": 0.003},
    "audit_from": "revealing/synth_derm/tiny_vgg_default.yaml",
    "annotation": {"seed_from": "spray", "n_seeds": 5},
    "mitigation_from": "synth_derm",
}


def _read(relative):
    return yaml.safe_load((CONFIG_FILES / relative).read_text())


def _split(config):
    """(shared keys, step-specific keys) of a per-step config."""
    shared = {k: v for k, v in config.items() if k in SHARED}
    own = {k: v for k, v in config.items() if k not in SHARED and k not in NOT_COPIED}
    return shared, own


def _audit(relative):
    """(shared keys, audit section) of a per-step audit config."""
    shared, own = _split(_read(relative))
    return shared, {k: v for k, v in own.items() if k not in NOT_COPIED_TO_AUDIT}


def _mitigation(spec):
    """(keys every run shares, one dict per run) from the named configs of a mitigation grid."""
    per_run = SHARED - {"layer_name"}  # a correction's layer is its own; the data and model keys are the pipeline's
    runs = [{k: v for k, v in _read(f"{spec['mitigation_dir']}/{name}.yaml").items()
             if k not in per_run and k not in NOT_COPIED} for name in spec["mitigation"]]
    common = {k: runs[0][k] for k in COMMON_MITIGATION_KEYS
              if k in runs[0] and all(run.get(k) == runs[0][k] for run in runs)}
    return common, [{k: v for k, v in run.items() if k not in common} for run in runs]


def synth_derm():
    shared, training = _split(_read(SYNTH_DERM["training"]))
    audit_shared, audit = _audit(SYNTH_DERM["audit"])
    common, runs = _mitigation(SYNTH_DERM)
    header = "The default audit (make demo): the band-aid shortcut of the embedded dermoscopy data"
    return header, {**shared, **audit_shared, "training": training, "audit": audit,
                    "annotation": SYNTH_DERM["annotation"], "mitigation_common": common, "mitigation": runs}


def demo():
    header, config = synth_derm()
    return header, {**config, "training": {**config["training"], **DEMO_LAYOUT},
                    "mitigation_common": {**config["mitigation_common"], **DEMO_LAYOUT}}


def synth_ecg():
    shared, training = _split(_read(SYNTH_ECG["training"]))
    _, derm = synth_derm()
    runs = [{k: v for k, v in run.items() if k not in SYNTH_ECG["not_copied"]} for run in derm["mitigation"]
            if run["method"] not in SYNTH_ECG["without"]]
    header = "The audit of the embedded 12-lead ECG data: the defective-lead shortcut of the LVH class"
    return header, {**shared, **SYNTH_ECG["shared"], "training": training, "audit": SYNTH_ECG["audit"],
                    "annotation": SYNTH_ECG["annotation"], "mitigation_common": SYNTH_ECG["mitigation_common"],
                    "mitigation": runs}


def image_folder():
    shared, training = _split(_read(IMAGE_FOLDER["training"]))
    audit_shared, audit = _audit(IMAGE_FOLDER["audit_from"])
    audit_shared.pop("dataset_name")
    _, derm = synth_derm()
    header = ("Your own images (dataset_name: image_folder; root from data_paths.image_folder in "
              "config_files/local_config.yaml), here set up for an export of the embedded data")
    return header, {**shared, **audit_shared, **IMAGE_FOLDER["shared"],
                    "training": {**training, **IMAGE_FOLDER["training_overrides"]}, "audit": audit,
                    "annotation": IMAGE_FOLDER["annotation"], "mitigation_common": derm["mitigation_common"],
                    "mitigation": derm["mitigation"]}


PIPELINES = {"synth_derm": demo, "synth_ecg": synth_ecg, "image_folder": image_folder}


def config_text(build):
    """The YAML text of one pipeline config: its header comment, then its keys."""
    header, config = build()
    return f"# {header}.\n# Written by config_generator_pipeline.py.\n{yaml.safe_dump(config, sort_keys=False)}"


def main():
    return write_configs({name: config_text(build) for name, build in PIPELINES.items()}, OUT_DIR)


if __name__ == "__main__":
    main()
