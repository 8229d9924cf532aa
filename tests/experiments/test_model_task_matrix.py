"""The whole audit (every step, every correction method) on every small model family and task type.

{tiny_vgg, tiny_resnet, tiny_vit} x {single-label, multi-label} images (synth_derm, its multi-label
variant adds the label ``large``) and tiny_cnn1d x {single-label, multi-label} signals (synth_ecg,
multi-label adds ``fast_rate``). Every run gives finite metrics of the right shape; a method a model
family cannot run is refused at config time with one line naming what works instead, before any
step runs. Sizes are the smallest at which every step has something to work on.
"""
import copy
import json
import math
import re

import pytest
import yaml

from experiments.run_pipeline import run
from utils.config import load_config
from utils.errors import UserError
from utils.pipeline.config import PipelineConfig

IMAGE = {"dataset_name": "synth_derm", "artifact": "band_aid", "img_size": 32,
         "dataset_options": {"n_train": 80, "n_val": 24, "n_test": 24}}
SIGNAL = {"dataset_name": "synth_ecg", "artifact": "defective_lead",
          "dataset_options": {"n_train": 72, "n_val": 24, "n_test": 24}}
AUDIT = {"spray_n_neighbors": 6, "spray_n_eigval": 6, "spray_n_clusters": [2, 3], "spray_min_cluster_size": 4,
         "lof_n_neighbors": 6, "dora_sams_steps": 2, "dora_n_refs": 1, "crp_n_refs": 1, "retrieval_top_k": 6,
         "embedding_2d": "mds", "n_outliers": 3}
BASE = {"seed": 0, "batch_size": 32, "training": {"num_epochs": 1, "lr": 0.003},
        "annotation": {"n_seeds": 2, "seed_from": "spray"},
        "mitigation_common": {"num_epochs": 1, "lr": 0.001, "eval_max_samples": 6, "n_heatmaps": 1}}
METHODS = [{"method": "Vanilla"}, {"method": "PClarc"}, {"method": "ReactivePClarc"}, {"method": "RRClarc"},
           {"method": "RRR"}, {"method": "RRR", "rrr_explanation": "lrp"}, {"method": "ISNet"}]
NO_VIT_LRP = "cannot explain tiny_vit (no differentiable LRP for transformer attention)"
# what each family refuses, and the words of the refusal
REFUSED = {
    "tiny_vit": {"ISNet": f"ISNet selective {NO_VIT_LRP}", "RRR lrp": f"RRR with rrr_explanation 'lrp' {NO_VIT_LRP}"},
    "tiny_cnn1d": {"ISNet": "ISNet selective needs foreground masks, and signal data ('synth_ecg') has none"},
}
CASES = [(model, task) for model in ("tiny_vgg", "tiny_resnet", "tiny_vit", "tiny_cnn1d")
         for task in ("single", "multi")]


def _name(run_settings):
    return " ".join([run_settings["method"], *[v for k, v in run_settings.items() if k == "rrr_explanation"]])


def _config(model, task, methods, out_dir):
    config = {**copy.deepcopy(BASE), **copy.deepcopy(SIGNAL if model == "tiny_cnn1d" else IMAGE),
              "model_name": model, "audit": dict(AUDIT, **({} if model == "tiny_cnn1d" else {"heatmap_size": 16})),
              "mitigation": methods, "output_dir": str(out_dir)}
    if task == "multi":
        config["dataset_options"]["multi_label"] = True
        config["training"]["loss"] = "bce"  # the corrections inherit it
    return config


def _write(tmp_path, name, config):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("model,task", CASES)
def test_every_step_and_method_runs_or_is_refused(model, task, tmp_path):
    refused = REFUSED.get(model, {})
    for method in METHODS:  # refusals come from the config, before any step runs
        if _name(method) in refused:
            path = _write(tmp_path, "refused", _config(model, task, [method], tmp_path / "unused"))
            message = "^config error in .*'mitigation.0': " + re.escape(refused[_name(method)]) + "; use "
            with pytest.raises(UserError, match=message):
                load_config(path, PipelineConfig).check_steps()
    assert not (tmp_path / "unused").exists()

    methods = [m for m in METHODS if _name(m) not in refused]
    config = _config(model, task, methods, tmp_path / "outputs")
    root, _ = run(_write(tmp_path, f"{model}_{task}", config), log=lambda *_: None)
    metrics = json.loads((root / "metrics.json").read_text())

    classes = metrics["data"]["classes"]
    assert len(classes) == {"image": {"single": 2, "multi": 3}, "signal": {"single": 3, "multi": 4}}[
        "signal" if model == "tiny_cnn1d" else "image"][task]
    for subset in ("clean", "attacked", "ch"):
        scores = metrics["train"]["test"][subset]
        assert 0 <= scores["accuracy"] <= 1
        if task == "multi":  # per-label AUROC and macro-F1 for multi-label tasks
            assert set(scores["per_class_auroc"]) == set(classes)
            assert all(0 <= v <= 1 for v in scores["per_class_auroc"].values())
            assert 0 <= scores["macro_f1"] <= 1
    assert metrics["retrieve"]["variants"] and metrics["localize"]["n"] > 0
    assert 0 <= metrics["localize"]["iou_mean"] <= 1

    every_run = metrics["evaluate"]["all_runs"]
    assert len({row["config"] for row in every_run}) == len(methods)  # every configured run evaluated
    for row in every_run:
        assert all(math.isfinite(row[key]) for key in ("clean", "attacked", "ch")), row["config"]
        assert row["status"] in ("ok", "degraded", "collapsed")
    # one run per method is chosen (the two RRR explanations are candidates of one method) and fully measured
    chosen = [row for row in metrics["evaluate"]["comparison"] if row["method"] != "original"]
    assert sorted(row["method"] for row in chosen) == sorted({row["method"] for row in every_run})
    for row in chosen:
        for key in ("artifact_relevance", "tcav", "p_attacked"):
            assert math.isfinite(row[key]), (row["method"], key)
