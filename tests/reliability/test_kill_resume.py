"""kill -9 at seeded random points of training, preprocessing, a correction and the pipeline, then the
same command again (``--resume`` where the step asks for it): the outputs must equal those of an
uninterrupted run (weights, metrics and stores equal; the report identical apart from timings).

One kill point per step (the middle of the run) is tried by default; the ``slow`` set tries five seeded
random points per step, the pipeline included (``make test`` runs both). Kill points are events of the
run (:mod:`tests.reliability.harness`): renames of atomic writes, store batches and optimizer steps.
"""
import json
import re

import pytest
import torch
import yaml

from tests.conftest import assert_same_h5
from tests.reliability.harness import KILL_RESULTS, count_events, kill_points, run_killed
from utils.checkpoint import load_checkpoint, save_checkpoint

TRAINING = {"dataset_name": "synth_derm", "img_size": 16, "dataset_options": {"n_train": 48, "n_val": 16, "n_test": 16},
            "model_name": "tiny_vgg", "batch_size": 16, "lr": 0.003, "num_epochs": 3, "milestones": [2], "seed": 0}
AUDIT = {"dataset_name": "synth_derm", "img_size": 16, "dataset_options": {"n_train": 40, "n_val": 8, "n_test": 8},
         "model_name": "tiny_vgg", "batch_size": 4, "splits": ["train", "val"], "heatmap_size": 8}
CORRECTION = {"dataset_name": "synth_derm", "img_size": 16,
              "dataset_options": {"n_train": 48, "n_val": 16, "n_test": 16},
              "model_name": "tiny_vgg", "batch_size": 16, "artifact": "band_aid", "method": "RRR", "lamb": 1.0,
              "num_epochs": 3, "lr": 0.001, "layer_name": "features.6", "seed": 0}
PIPELINE = {
    "dataset_name": "synth_derm", "img_size": 32, "seed": 0, "model_name": "tiny_vgg", "artifact": "band_aid",
    "layer_name": "features.6", "batch_size": 32, "dataset_options": {"n_train": 64, "n_val": 32, "n_test": 32},
    "training": {"num_epochs": 2, "lr": 0.003},
    "audit": {"heatmap_size": 8, "spray_n_neighbors": 6, "spray_n_eigval": 6, "spray_n_clusters": [2],
              "spray_min_cluster_size": 4, "lof_n_neighbors": 6, "dora_sams_steps": 2, "dora_n_refs": 2,
              "crp_n_refs": 2, "retrieval_top_k": 4, "embedding_2d": "mds", "n_outliers": 3},
    "annotation": {"n_seeds": 2, "seed_from": "gt"},
    "mitigation_common": {"num_epochs": 2, "lr": 0.001, "eval_max_samples": 6, "n_heatmaps": 2},
    "mitigation": [{"method": "RRR", "lamb": 1.0}],
}
FAKE_KEY = "fake-wandb-key-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TIMINGS = ("seconds", "correction_seconds", "time", "training_time")


def _write(folder, name, values):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**values, "output_dir": str(folder / "outputs")}))
    return str(path)


def _same_weights(a, b):
    a, b = load_checkpoint(a)["model_state_dict"], load_checkpoint(b)["model_state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _paths(text, root):
    # the run's own folder, and the pipeline's correction names, which hash the settings with that folder in them
    return re.sub(r"(_(?:RRR|Vanilla|PClarc))_[0-9a-f]{8}", r"\1_<hash>", text.replace(str(root), "<out>"))


def _without(value, root):
    """JSON content minus wall-clock times, with the run's own folder written as <out>."""
    if isinstance(value, dict):
        return {_paths(k, root): _without(v, root) for k, v in value.items() if k not in TIMINGS and k != "corrected"}
    if isinstance(value, list):
        return [_without(v, root) for v in value]
    return _paths(value, root) if isinstance(value, str) else value


def _same_json(a, a_root, b, b_root):
    assert _without(json.loads(a.read_text()), a_root) == _without(json.loads(b.read_text()), b_root)


def _trials(n_events, seed, slow):
    """The kill points of one step: the middle event of the run by default; in the slow set five seeded
    random events besides it."""
    middle = n_events // 2 + 1
    return [k for k in kill_points(n_events, 6, seed=seed) if k != middle][:5] if slow else [middle]


def _record(step, point, outcome):
    """Count a kill point of ``step`` as ``tried`` or ``identical`` (resumed to outputs equal to the
    uninterrupted run's); ``tests/reliability/conftest.py`` reports the counts at the end of the session."""
    KILL_RESULTS.setdefault(step, {"tried": [], "identical": []})[outcome].append(point)


# --- training -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def training_reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train_reference")
    config = _write(folder, "tiny", TRAINING)
    _, n_events = count_events("model_training.start_training:main", (["--config_file", config],))
    return folder / "outputs" / "training" / "synth_derm" / "tiny_vgg" / "tiny", n_events


def _training_trial(tmp_path, reference, index, slow):
    ref_dir, n_events = reference
    point = _trials(n_events, 100, slow)[index]
    config = _write(tmp_path, "tiny", TRAINING)
    _record("training", point, "tried")
    assert run_killed("model_training.start_training:main", (["--config_file", config],), point) == -9
    from model_training.start_training import main

    out = tmp_path / "outputs" / "training" / "synth_derm" / "tiny_vgg" / "tiny"
    main(["--config_file", config, "--resume"])  # from scratch when the kill came before the first last.pt
    for name in ("best.pt", "last.pt"):
        _same_weights(ref_dir / "checkpoints" / name, out / "checkpoints" / name)
    _same_json(ref_dir / "metrics.json", ref_dir.parents[4], out / "metrics.json", tmp_path / "outputs")
    assert not (out / ".lock").exists()  # the killed run's lock was taken over and released
    _record("training", point, "identical")


def test_training_killed_then_resumed(tmp_path, training_reference):
    _training_trial(tmp_path, training_reference, 0, slow=False)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(5))
def test_training_killed_at_five_points(tmp_path, training_reference, index):
    _training_trial(tmp_path, training_reference, index, slow=True)


# --- preprocessing --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def preprocessing_reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pre_reference")
    torch.manual_seed(0)
    from models import get_model

    ckpt = folder / "model.pt"
    save_checkpoint(ckpt, get_model("tiny_vgg", 2, img_size=16), "tiny_vgg", 2)
    config = _write(folder, "audit", {**AUDIT, "ckpt_path": str(ckpt)})
    _, n_events = count_events("experiments.preprocessing.run_preprocessing:main", (["--config_file", config],))
    return folder / "outputs" / "preprocessing" / "synth_derm" / "tiny_vgg" / "audit", n_events, ckpt


def _preprocessing_trial(tmp_path, reference, index, slow):
    ref_dir, n_events, ckpt = reference
    point = _trials(n_events, 200, slow)[index]
    config = _write(tmp_path, "audit", {**AUDIT, "ckpt_path": str(ckpt)})
    argv = ["--config_file", config]
    _record("preprocessing", point, "tried")
    assert run_killed("experiments.preprocessing.run_preprocessing:main", (argv,), point) == -9
    from experiments.preprocessing.run_preprocessing import main

    main(argv)  # preprocessing continues by itself
    out = tmp_path / "outputs" / "preprocessing" / "synth_derm" / "tiny_vgg" / "audit"
    for split in AUDIT["splits"]:
        assert_same_h5(ref_dir / f"{split}.h5", out / f"{split}.h5")
    _record("preprocessing", point, "identical")


def test_preprocessing_killed_then_finished(tmp_path, preprocessing_reference):
    _preprocessing_trial(tmp_path, preprocessing_reference, 0, slow=False)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(5))
def test_preprocessing_killed_at_five_points(tmp_path, preprocessing_reference, index):
    _preprocessing_trial(tmp_path, preprocessing_reference, index, slow=True)


# --- a correction ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def correction_reference(tmp_path_factory):
    from tests.conftest import train_tiny_vgg

    folder = tmp_path_factory.mktemp("correction_reference")
    from datasets import get_dataset

    data = get_dataset("synth_derm", img_size=16, dataset_options=CORRECTION["dataset_options"])
    ckpt = folder / "original.pt"
    train_tiny_vgg(data.train, 16, ckpt, epochs=2)
    config = _write(folder, "rrr", {**CORRECTION, "ckpt_path": str(ckpt)})
    _, n_events = count_events("experiments.mitigation_experiments.start_model_correction:main",
                               (["--config_file", config],))
    return folder / "outputs" / "mitigation" / "synth_derm" / "tiny_vgg" / "rrr", n_events, ckpt


def _correction_trial(tmp_path, reference, index, slow):
    ref_dir, n_events, ckpt = reference
    point = _trials(n_events, 300, slow)[index]
    config = _write(tmp_path, "rrr", {**CORRECTION, "ckpt_path": str(ckpt)})
    target = "experiments.mitigation_experiments.start_model_correction:main"
    _record("correction", point, "tried")
    assert run_killed(target, (["--config_file", config],), point) == -9
    from experiments.mitigation_experiments.start_model_correction import main

    main(["--config_file", config, "--resume"])
    out = tmp_path / "outputs" / "mitigation" / "synth_derm" / "tiny_vgg" / "rrr"
    _same_weights(ref_dir / "checkpoints" / "corrected.pt", out / "checkpoints" / "corrected.pt")
    _same_json(ref_dir / "metrics.json", ref_dir.parents[4], out / "metrics.json", tmp_path / "outputs")
    _record("correction", point, "identical")


def test_correction_killed_then_resumed(tmp_path, correction_reference):
    _correction_trial(tmp_path, correction_reference, 0, slow=False)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(5))
def test_correction_killed_at_five_points(tmp_path, correction_reference, index):
    _correction_trial(tmp_path, correction_reference, index, slow=True)


# --- the pipeline ---------------------------------------------------------------------------------
def _pipeline_config(folder):
    return _write(folder, "tiny", {**PIPELINE, "wandb_api_key": FAKE_KEY})


@pytest.fixture(scope="module")
def pipeline_reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline_reference")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_API_KEY", FAKE_KEY)
        _, n_events = count_events("experiments.run_pipeline:main", (["--config_file", _pipeline_config(folder)],))
    return folder, n_events


def _report_text(root, out):
    """report.md with the run's own folders written as <out> and the cells of timing columns blanked: apart
    from those, an interrupted run's report must be the uninterrupted run's."""
    lines, timing_columns = [], []
    for line in _paths((root / "report.md").read_text(), out).splitlines():
        cells = line.split(" | ")
        if not line.startswith("|"):
            timing_columns = []
        elif not timing_columns and any(c.strip(" |") in TIMINGS for c in cells):
            timing_columns = [i for i, c in enumerate(cells) if c.strip(" |") in TIMINGS]
        else:
            cells = ["<time>" if i in timing_columns else c for i, c in enumerate(cells)]
        lines.append(" | ".join(cells))
    return "\n".join(lines)


@pytest.mark.slow
def test_no_output_of_a_pipeline_run_holds_the_api_key(pipeline_reference):
    """The key was given in the config and in $WANDB_API_KEY: no file the run wrote holds it."""
    folder, _ = pipeline_reference
    files = [p for p in (folder / "outputs").rglob("*") if p.is_file()]
    assert len(files) > 50
    holding = [str(p) for p in files if FAKE_KEY.encode() in p.read_bytes()]
    assert holding == []
    assert "***" in (folder / "outputs" / "pipeline" / "synth_derm" / "tiny_vgg" / "tiny" / "config.yaml").read_text()


@pytest.mark.slow
def test_every_json_output_of_a_pipeline_run_is_strict_json(pipeline_reference):
    """No NaN or Infinity token (jq, browsers and strict parsers refuse them): a missing number is null."""
    folder, _ = pipeline_reference

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    files = sorted((folder / "outputs").rglob("*.json"))
    assert len(files) > 20
    for path in files:
        json.loads(path.read_text(), parse_constant=refuse)
    root = folder / "outputs" / "pipeline" / "synth_derm" / "tiny_vgg" / "tiny"
    metrics = json.loads((root / "metrics.json").read_text())
    original = next(row for row in metrics["evaluate"]["comparison"] if row["method"] == "original")
    assert original["tcav_refit"] is None  # not measured for the original model: null, not NaN


@pytest.mark.slow
@pytest.mark.parametrize("index", range(5))
def test_pipeline_killed_at_five_points(tmp_path, pipeline_reference, index, monkeypatch):
    ref_folder, n_events = pipeline_reference
    point = kill_points(n_events, 5, seed=400)[index]
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    argv = ["--config_file", _pipeline_config(tmp_path)]
    _record("pipeline", point, "tried")
    assert run_killed("experiments.run_pipeline:main", (argv,), point) == -9
    from experiments.run_pipeline import main

    main(argv)  # the stopped pipeline continues
    ref_root = ref_folder / "outputs" / "pipeline" / "synth_derm" / "tiny_vgg" / "tiny"
    root = tmp_path / "outputs" / "pipeline" / "synth_derm" / "tiny_vgg" / "tiny"
    _same_json(ref_root / "metrics.json", ref_folder / "outputs", root / "metrics.json", tmp_path / "outputs")
    assert _report_text(ref_root, ref_folder / "outputs") == _report_text(root, tmp_path / "outputs")
    _record("pipeline", point, "identical")
