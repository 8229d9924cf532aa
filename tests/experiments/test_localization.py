"""Localization on tiny models: masks binary and input-sized, layout as mitigation reads it; 2D, ViT, 1D."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import TINY_DATA
from datasets.base import BaseDataset, DataSplits
from datasets.registry import get_dataset_from_config
from experiments.localization import eval_localization_quantitatively, localize_artifacts
from models.registry import _MODELS, register_model
from utils.bias.localization import load_localized_masks
from utils.bias.localize import evaluate_localization, localize
from utils.bias.synthetic import write_synthetic_stores
from utils.config.audit import AuditConfig
from utils.config.loader import load_config
from utils.paths import step_dir

pytestmark = pytest.mark.filterwarnings("ignore:no ckpt_path")
DATA = {**TINY_DATA, "dataset_options": {"n_train": 48, "n_val": 8, "n_test": 24},
        "artifacts": {"band_aid": {"benign": 0.5}}}


def _audit(write_config, model_name, layer, channels, **extra):
    path = write_config("audit", **DATA, model_name=model_name, layer_name=layer, artifact="band_aid", **extra)
    config = load_config(path, AuditConfig)
    write_synthetic_stores(config, get_dataset_from_config(config), "band_aid", [layer], n_channels=channels,
                           split_names=("train",))
    return path, config


@pytest.mark.parametrize("model_name,layer,channels", [("tiny_vgg", "features.10", 64),
                                                        ("tiny_vit", "encoder.layers.encoder_layer_1", 32)])
def test_image_masks_layout_and_evaluation(write_config, model_name, layer, channels):
    path, config = _audit(write_config, model_name, layer, channels, max_localization_samples=6)
    summary = eval_localization_quantitatively.main(["--config_file", str(path)])
    out = step_dir(config, "localization", create=False) / "band_aid"
    index = json.loads((out / "index.json").read_text())
    assert index["artifact"] == "band_aid" and index["split"] == "test"
    assert len(index["samples"]) == 6
    for sid, entry in index["samples"].items():
        assert entry == {"mask": f"masks/{sid}.png", "heatmap": f"heatmaps/{sid}.npy"}
        png = np.asarray(Image.open(out / entry["mask"]))
        assert png.dtype == np.uint8 and png.shape == (32, 32) and set(np.unique(png)) <= {0, 255}
        heatmap = np.load(out / entry["heatmap"])
        assert heatmap.dtype == np.float32 and heatmap.shape == (32, 32) and (heatmap >= 0).all()
    masks = load_localized_masks(out)
    assert set(masks) == set(index["samples"])
    assert all(m.dtype == torch.bool and m.shape == (32, 32) for m in masks.values())
    assert summary["n"] == 6 and 0 <= summary["iou_mean"] <= 1 and 0 <= summary["artifact_relevance_mean"] <= 1
    assert (out / "evaluation.csv").is_file() and (out / "config.yaml").is_file()


# --- 1D: a tiny signal data set with a time-localized artifact and a tiny Conv1d model --------
T = 96


class _Signals(BaseDataset):
    modality = "signal"

    def __init__(self, split, n, seed):
        rng = np.random.default_rng(seed)
        super().__init__(split, ["a", "b"], [f"{split}_{i:03d}" for i in range(n)], rng.integers(0, 2, n),
                         mean=[0.0, 0.0], std=[1.0, 1.0])
        self.signals = rng.normal(scale=0.2, size=(n, 2, T)).astype(np.float32)
        self.has_spike = rng.random(n) < 0.5
        self.start = rng.integers(0, T - 16, n)
        for i in np.flatnonzero(self.has_spike):
            self.signals[i, 0, self.start[i]:self.start[i] + 16] += 3.0

    def load_raw(self, idx):
        return torch.from_numpy(self.signals[idx])

    @property
    def artifact_names(self):
        return ["spike"]

    def artifact_labels(self, artifact):
        return self.has_spike.copy()

    def get_mask(self, idx, artifact):
        mask = torch.zeros(T, dtype=torch.bool)
        if self.has_spike[idx]:
            mask[self.start[idx]:self.start[idx] + 16] = True
        return mask


MODEL_1D = "test_bias_tiny_conv1d"
if MODEL_1D not in _MODELS:
    @register_model(MODEL_1D, layer_names=("3",), modality="signal", default_layer="3")
    def _tiny_conv1d(n_classes, img_size=None, in_channels=2):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv1d(in_channels, 8, 5, padding=2), nn.ReLU(), nn.Conv1d(8, 8, 5, padding=2),
                             nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, n_classes))


def test_signal_time_masks(write_config):
    path = write_config("ecg", model_name=MODEL_1D, artifact="spike", max_localization_samples=5)
    config = load_config(path, AuditConfig)
    splits = DataSplits(_Signals("train", 40, 0), _Signals("val", 8, 1), _Signals("test", 20, 2))
    write_synthetic_stores(config, splits, "spike", ["3"], n_channels=8, split_names=("train",))
    out = step_dir(config, "localization") / "spike"
    index = localize(config, splits, "3", "spike", out, progress=False)
    assert len(index["samples"]) == 5
    for sid, entry in index["samples"].items():
        assert entry["mask"] == f"masks/{sid}.npy"
        assert np.load(out / entry["heatmap"]).shape == (T,)
    masks = load_localized_masks(out)
    assert all(m.dtype == torch.bool and m.shape == (T,) for m in masks.values())
    rows, summary = evaluate_localization(config, splits, "spike", out)
    assert summary["n"] == 5 and all(0 <= r["iou"] <= 1 for r in rows)
