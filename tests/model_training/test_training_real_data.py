"""``start_training`` runs one epoch on every real-data fixture tree and on the synthetic ECG;
the committed training configs of these data sets are valid."""
import json

import pytest

from datasets import get_dataset_entry
from model_training.start_training import main
from tests.conftest import ROOT
from tests.datasets.fixture_trees import chexpert_tree, hyper_kvasir_tree, image_folder_tree, isic_tree, ptbxl_tree
from utils.config import TrainingConfig, load_config

IMAGE_MODEL = {"model_name": "tiny_vgg", "img_size": 32}
SIGNAL_MODEL = {"model_name": "tiny_cnn1d"}
CASES = {  # dataset name -> (fixture writer, config keys)
    "isic": (lambda p: isic_tree(p, n_per_class=5), IMAGE_MODEL),
    "isic_attacked": (lambda p: isic_tree(p, n_per_class=5), IMAGE_MODEL),
    "chexpert": (lambda p: chexpert_tree(p / "CheXpert-v1.0-small", n_train_patients=6, n_valid_patients=0),
                 IMAGE_MODEL),
    "hyper_kvasir": (hyper_kvasir_tree, IMAGE_MODEL),
    "image_folder": (image_folder_tree, IMAGE_MODEL),
    "ptbxl": (ptbxl_tree, {**SIGNAL_MODEL, "loss": "bce"}),
    "synth_ecg": (None, {**SIGNAL_MODEL, "dataset_options": {"n_train": 24, "n_val": 6, "n_test": 6}}),
}


@pytest.mark.parametrize("dataset", list(CASES))
def test_one_epoch_smoke_run(dataset, write_config, tmp_path):
    writer, keys = CASES[dataset]
    paths = {"data_paths": [str(writer(tmp_path / "data"))]} if writer else {}
    config = write_config("smoke", dataset_name=dataset, batch_size=32, num_epochs=1, lr=0.003, **paths, **keys)
    metrics = main(["--config_file", str(config)])
    out = tmp_path / "outputs" / "training" / dataset / keys["model_name"] / "smoke"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test"]["ch"]["n"] > 0 and metrics["history"][0]["epoch"] == 1
    assert (out / "checkpoints" / "best.pt").is_file()


COMMITTED = sorted(p for name in ("isic", "chexpert", "hyper_kvasir", "ptbxl", "synth_ecg", "image_folder")
                   for p in (ROOT / "config_files" / "training" / name).glob("*.yaml"))


def test_committed_configs_are_valid_and_hold_no_paths():
    assert len(COMMITTED) >= 20
    for path in COMMITTED:
        config = load_config(path, TrainingConfig)
        assert not config.data_paths, path  # roots come from local_config.yaml
        if config.dataset_name.endswith("_attacked"):
            entry = get_dataset_entry(config.dataset_name)
            assert config.artifact_type == entry.attacked_default["artifact_type"], path
            assert config.p_artifact == entry.attacked_default["p_artifact"], path
