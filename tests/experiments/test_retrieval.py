"""Retrieval entry point on synthetic stores: CAV fit on train, metrics on held-out splits."""
import json

import pandas as pd
import pytest

from conftest import TINY_DATA
from datasets.registry import get_dataset_from_config
from experiments.sample_retrieval import run_biased_sample_ranking
from utils.bias.synthetic import write_synthetic_stores
from utils.config.audit import AuditConfig
from utils.config.loader import load_config
from utils.paths import step_dir

DATA = {**TINY_DATA, "dataset_options": {"n_train": 96, "n_val": 48, "n_test": 48},
        "artifacts": {"band_aid": {"benign": 0.4}}}


@pytest.fixture
def synthetic_audit(write_config):
    # a controlled test: the CAV is fit on the planted ground truth
    path = write_config("audit", **DATA, model_name="tiny_vgg", artifact="band_aid", cav_type="svm",
                        cav_labels="ground_truth")
    config = load_config(path, AuditConfig)
    splits = get_dataset_from_config(config)
    write_synthetic_stores(config, splits, "band_aid", ["features.10"])
    return path, config


def test_ranking_on_held_out_splits(synthetic_audit):
    path, config = synthetic_audit
    results = run_biased_sample_ranking.main(["--config_file", str(path)])
    out = step_dir(config, "sample_retrieval", create=False) / "band_aid"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["fit_split"] == "train"
    assert set(saved["variants"]) == {"cavs_mean", "rel"}
    for variant in results["variants"].values():
        assert set(variant["splits"]) == {"val", "test"}
        assert variant["splits"]["test"]["auroc"] > 0.95  # planted direction, strength 3 sigma
    scores = pd.read_csv(out / "scores_cavs_mean.csv")
    assert set(scores["split"]) == {"train", "val", "test"}
    for name in ("roc_pr.png", "top_ranked.png", "config.yaml", "cav_cavs_mean.json"):
        assert (out / name).is_file()


def test_missing_artifact_is_one_line_error(synthetic_audit, capsys):
    path, _ = synthetic_audit
    with pytest.raises(SystemExit) as exit_info:
        run_biased_sample_ranking.main(["--config_file", str(path), "--artifact", "ruler"])
    assert exit_info.value.code == 2
    assert "ruler" in capsys.readouterr().err
