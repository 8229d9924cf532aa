"""Iterative annotation: seeds, atomic accept/reject with history, simulation beats random order."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_DATA
from datasets.registry import get_dataset_from_config
from experiments.sample_retrieval import refine
from utils.bias.annotation import AnnotationState, inspected_at_recall, simulate_annotation
from utils.bias.synthetic import write_synthetic_stores
from utils.config.audit import AuditConfig
from utils.config.loader import load_config
from utils.io import write_json
from utils.paths import step_dir

DATA = {**TINY_DATA, "dataset_options": {"n_train": 96, "n_val": 16, "n_test": 16},
        "artifacts": {"band_aid": {"benign": 0.4}}}


@pytest.fixture
def audit(write_config):
    path = write_config("audit", **DATA, model_name="tiny_vgg", artifact="band_aid", retrieval_top_k=6)
    config = load_config(path, AuditConfig)
    splits = get_dataset_from_config(config)
    write_synthetic_stores(config, splits, "band_aid", ["features.10"], split_names=("train",))
    return path, config, splits


def _reveal_file(config, splits):
    labels = splits.train.artifact_labels("band_aid")
    ids = [s for s, y in zip(splits.train.sample_ids, labels) if y][:3]
    write_json(step_dir(config, "reveal") / "spray_class0.json",
               {"outlier_samples": [{"sample_id": s, "score": 1.0 - 0.1 * k} for k, s in enumerate(ids)]})
    return ids


def test_rounds_seed_accept_reject(audit):
    path, config, splits = audit
    seeds = _reveal_file(config, splits)
    out = step_dir(config, "sample_retrieval", create=False)
    first = refine.main(["--config_file", str(path)])
    assert first["accepted"] == 3
    assert json.loads((out / "annotations.json").read_text()) == {"band_aid": seeds}
    to_review = pd.read_csv(out / "band_aid" / "to_review.csv")
    assert len(to_review) == 6 and not set(to_review["sample_id"]) & set(seeds)
    assert (out / "band_aid" / "to_review.png").is_file()

    next_ids = list(to_review["sample_id"])
    refine.main(["--config_file", str(path), "--accept", next_ids[0], "--reject", f"{next_ids[1]},{next_ids[2]}"])
    refine.main(["--config_file", str(path), "--accept", next_ids[1]])  # a later decision overrides
    state = json.loads((out / "band_aid" / "annotation_state.json").read_text())
    assert state["accepted"] == seeds + [next_ids[0], next_ids[1]]
    assert state["rejected"] == [next_ids[2]]
    assert [h["source"] for h in state["history"]] == ["seed:reveal", "user", "user"]
    assert json.loads((out / "annotations.json").read_text())["band_aid"] == state["accepted"]
    # only whole files: no temporary files left beside them
    assert not list(out.rglob("*.tmp"))


def test_unknown_id_rejected(audit, capsys):
    path, config, splits = audit
    _reveal_file(config, splits)
    with pytest.raises(SystemExit):
        refine.main(["--config_file", str(path), "--accept", "no_such_sample"])
    assert "not in the train split" in capsys.readouterr().err


def test_failed_write_keeps_previous_state(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    state = AnnotationState("band_aid")
    state.record(accept=["a"], source="seed")
    state.save(path)
    state.record(accept=["b"])
    monkeypatch.setattr(json, "dumps", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError):
        state.save(path)
    monkeypatch.undo()
    assert AnnotationState.load(path, "band_aid").accepted == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_simulation_finds_planted_artifact_fast(audit):
    path, config, _ = audit
    result = refine.main(["--config_file", str(path), "--simulate"])
    assert result["inspected_per_artifact_sample"] < 2.0  # the target; random order needs ~4.5
    assert (step_dir(config, "sample_retrieval", create=False) / "band_aid" / "simulation.png").is_file()


def test_simulation_curve_is_monotone():
    rng = np.random.default_rng(0)
    labels = rng.random(120) < 0.3
    features = rng.normal(size=(120, 5)) + 3 * labels[:, None]
    inspected, found = simulate_annotation(features, labels, 3, 10, "mean")
    assert np.all(np.diff(found) >= 0) and found[-1] == labels.sum()
    assert inspected_at_recall(inspected, found, labels.sum(), 0.9) <= 1.2 * labels.sum()
