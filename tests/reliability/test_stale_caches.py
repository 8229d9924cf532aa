"""Caches that cannot go stale: a changed setting or a changed input file is a new run, never a reuse.

Rows of the issue's table that must give the right result (not an error): a pipeline re-run with
other training settings trains a new model beside the old one; corrections of an original model that
was retrained into the same path are redone; the pipeline's cache notices a replaced or missing file it
trusts; a relocalization killed midway leaves no index mixing old and new masks.
"""
import json

import pytest
import yaml

from tests.reliability.harness import run_killed
from utils.identity import file_identity

DATA = {"dataset_name": "synth_derm", "img_size": 16, "seed": 0, "model_name": "tiny_vgg", "batch_size": 16,
        "dataset_options": {"n_train": 32, "n_val": 16, "n_test": 16}}


def _yaml(path, values):
    path.write_text(yaml.safe_dump(values))
    return path


def _train_step(tmp_path, training):
    from utils.config import load_config
    from utils.pipeline import steps
    from utils.pipeline.config import PipelineConfig
    from utils.pipeline.runner import Context

    path = _yaml(tmp_path / "audit.yaml", {**DATA, "output_dir": str(tmp_path / "outputs"), "training": training})
    config = load_config(path, PipelineConfig)
    return steps.train_step(Context(config=config, root=tmp_path / "pipeline"))["ckpt_path"]


def test_the_pipeline_trains_anew_when_the_training_settings_change(tmp_path):
    """lr 0.003 -> 0.5 and adam -> sgd: a new model in a new folder (the old one kept as it was); the first
    settings again: their model is found and reused, nothing is trained."""
    from utils.checkpoint import load_checkpoint

    first = _train_step(tmp_path, {"num_epochs": 1, "lr": 0.003})
    kept = file_identity(first)
    second = _train_step(tmp_path, {"num_epochs": 1, "lr": 0.5, "optimizer": "sgd"})
    assert second != first and "audit_" in second
    assert file_identity(first) == kept
    saved = load_checkpoint(second)["config"]
    assert saved["lr"] == 0.5 and saved["optimizer"] == "sgd"
    assert _train_step(tmp_path, {"num_epochs": 1, "lr": 0.003}) == first and file_identity(first) == kept
    # more epochs of the first settings continue the first run (epochs may grow)
    assert _train_step(tmp_path, {"num_epochs": 2, "lr": 0.003}) == first
    assert load_checkpoint(first.replace("best.pt", "last.pt"))["epoch"] == 2


def test_corrections_are_redone_when_the_original_is_retrained_into_the_same_path(tmp_path):
    from datasets import get_dataset
    from model_training.corrections.runs import correct, run_metrics
    from tests.conftest import train_tiny_vgg
    from utils.config import load_config
    from utils.config.mitigation import MitigationConfig
    from utils.evaluation.compare import missing_evaluations
    from utils.evaluation.steps import evaluate_by_subset

    data = get_dataset("synth_derm", img_size=16, dataset_options=DATA["dataset_options"])
    original = tmp_path / "original.pt"
    train_tiny_vgg(data.train, 16, original, epochs=1)
    path = _yaml(tmp_path / "vanilla.yaml", {**DATA, "output_dir": str(tmp_path / "outputs"), "method": "Vanilla",
                                             "artifact": "band_aid", "ckpt_path": str(original), "num_epochs": 1})
    config = load_config(path, MitigationConfig)
    assert [run.config_name for run in correct(config, log=lambda *_: None)] == ["vanilla"]
    assert correct(config, log=lambda *_: None) == []  # reused
    evaluate_by_subset(config)
    assert missing_evaluations(config, everything=False) == []
    train_tiny_vgg(data.train, 16, original, epochs=2)  # another model, same path
    assert run_metrics(config) is None
    assert missing_evaluations(config, everything=False) == ["subsets.json"]  # measured the old models
    assert [run.config_name for run in correct(config, log=lambda *_: None)] == ["vanilla"]
    assert run_metrics(config)["inputs"]["original"] == file_identity(original)


def test_the_pipeline_cache_checks_the_files_it_trusts(tmp_path, monkeypatch):
    """A step's manifest is reused only while the files it trusts are the same; a changed file re-runs
    the step and every step computed from it."""
    from utils.pipeline import runner

    product, calls = tmp_path / "model.pt", []

    def make(ctx):
        calls.append("make")
        if not product.exists():
            product.write_bytes(b"weights v1")
        return {"trusted": [str(product)], "metrics": {}}

    def use(ctx):
        calls.append("use")
        return {"metrics": {"read": product.read_text()}}

    monkeypatch.setattr(runner, "STEPS", {"make": runner.Step("make", make, lambda ctx: {}),
                                          "use": runner.Step("use", use, lambda ctx: {}, depends=("make",))})

    def run():
        calls.clear()
        ctx = runner.Context(config=None, root=tmp_path / "pipeline")
        return runner.run_steps(ctx, log=lambda *_: None), list(calls)

    assert run()[1] == ["make", "use"]
    assert run()[1] == []  # everything cached
    product.write_bytes(b"weights v2, written by another run")
    results, calls_made = run()
    assert calls_made == ["make", "use"] and results["use"]["metrics"]["read"].endswith("another run")
    product.unlink()
    assert run()[1] == ["make", "use"]
    assert run()[1] == []


def test_a_relocalization_killed_midway_leaves_no_index(write_config, tmp_path):
    """Old masks and new ones are never mixed: the earlier index goes before the first mask is rewritten."""
    from datasets.registry import get_dataset_from_config
    from experiments.localization import localize_artifacts
    from utils.bias.synthetic import write_synthetic_stores
    from utils.config.audit import AuditConfig
    from utils.config.loader import load_config

    path = write_config("audit", **{**DATA, "img_size": 32}, layer_name="features.10", artifact="band_aid",
                        cav_labels="ground_truth", max_localization_samples=6,
                        artifacts={"band_aid": {"benign": 0.5}})
    config = load_config(path, AuditConfig)
    write_synthetic_stores(config, get_dataset_from_config(config), "band_aid", ["features.10"], n_channels=64,
                           split_names=("train",))
    argv = ["--config_file", str(path)]
    first = localize_artifacts.main(argv)
    out = tmp_path / "outputs" / "localization" / "synth_derm" / "tiny_vgg" / "audit" / "band_aid"
    assert (out / "index.json").is_file() and len(first["samples"]) >= 2
    # kill -9 at the third rename of the new run (config.yaml, cav.json, then the first heatmap)
    assert run_killed("experiments.localization.localize_artifacts:main", (argv,), 3) == -9
    assert not (out / "index.json").exists()
    again = localize_artifacts.main(argv)
    assert json.loads((out / "index.json").read_text())["samples"] == again["samples"] == first["samples"]


def test_a_checkpoint_records_its_inputs_and_redacts_secrets(write_config, tmp_path):
    """The key of a config is used, not saved: checkpoints and config.yaml hold '***'."""
    from model_training.trainer import run_training
    from utils.checkpoint import load_checkpoint
    from utils.config import TrainingConfig, load_config

    key = "sk-test-0123456789abcdef"
    config = load_config(write_config("keyed", **DATA, num_epochs=1, wandb_api_key=key), TrainingConfig)
    out, _ = run_training(config)
    for path in out.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    checkpoint = load_checkpoint(out / "checkpoints" / "last.pt")
    assert checkpoint["config"]["wandb_api_key"] == "***" and checkpoint["inputs"] == {"data": None}


@pytest.mark.slow
def test_weights_and_biases_gets_the_config_without_the_key(write_config, tmp_path, monkeypatch):
    """W&B (offline) logs a run whose config and files never hold the key from the config or $WANDB_API_KEY."""
    from model_training.trainer import run_training
    from utils.config import TrainingConfig, load_config

    key = "sk-wandb-0123456789abcdef0123"
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = load_config(write_config("wandb", **DATA, num_epochs=1, wandb_enabled=True, wandb_offline=True,
                                      wandb_api_key=key), TrainingConfig)
    out, _ = run_training(config)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any("wandb" in p.parts for p in files)
    assert [str(p) for p in files if key.encode() in p.read_bytes()] == []
    logged = [p for p in files if p.name == "config.yaml" and "wandb" in p.parts]
    assert logged and all("***" in p.read_text() for p in logged)
