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
from models.registry import MODELS, register_model
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
    path = write_config("audit", **DATA, model_name=model_name, layer_name=layer, artifact="band_aid",
                        cav_labels="ground_truth", **extra)
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


GATED = {"localization_init": "peak_region", "localization_gate_quantile": 0.9, "localization_gate_samples": 8,
         "mask_power": 0.5, "mask_closing": 14, "mask_fill_holes": True, "mask_components": "most_relevant"}


def test_calibrated_gate_and_mask_clean_up(write_config, tmp_path):
    from models import get_model
    from utils.checkpoint import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "model.pt", get_model("tiny_vgg", 2).eval(), "tiny_vgg", 2)
    path, config = _audit(write_config, "tiny_vgg", "features.10", 64, max_localization_samples=4,
                          ckpt_path=str(tmp_path / "model.pt"), **GATED)
    summary = eval_localization_quantitatively.main(["--config_file", str(path)])
    out = step_dir(config, "localization", create=False) / "band_aid"
    index = json.loads((out / "index.json").read_text())
    cav = json.loads((out / "cav.json").read_text())
    assert index["init"] == "peak_region" and index["gate_threshold"] == cav["gate_threshold"] != 0.0
    assert summary["n"] == 4
    # the threshold is the 0.9 quantile of the projections over the first 8 artifact-free training samples
    from utils.bias.data import ground_truth_labels, load_split_features
    from utils.bias.localization import projection_quantile
    from utils.bias.localize import load_model
    from utils.lrp.attribution import get_attributor

    splits = get_dataset_from_config(config)
    splits.train.augment = False
    train = load_split_features(config, splits.train, "train", "features.10", config.cav_mode)
    clean = train.indices[~ground_truth_labels(splits.train, "band_aid", train.indices)][:8]
    model = load_model(config, splits, "cpu")
    x = torch.stack([splits.train[int(i)][0] for i in clean])
    expected = projection_quantile(get_attributor(model), [x], "features.10", cav["direction"], 0.9)
    assert cav["gate_threshold"] == pytest.approx(expected, rel=1e-5)


def test_peak_region_on_tokens_is_one_line(write_config, capsys):
    path, _ = _audit(write_config, "tiny_vit", "encoder.layers.encoder_layer_1", 32, max_localization_samples=2,
                     localization_init="peak_region")
    with pytest.raises(SystemExit) as exit_info:
        localize_artifacts.main(["--config_file", str(path)])
    assert exit_info.value.code == 2 and "peak_region" in capsys.readouterr().err


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
if MODEL_1D not in MODELS:
    @register_model(MODEL_1D, layer_names=("3",), modality="signal", default_layer="3")
    def _tiny_conv1d(n_classes, img_size=None, in_channels=2):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv1d(in_channels, 8, 5, padding=2), nn.ReLU(), nn.Conv1d(8, 8, 5, padding=2),
                             nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, n_classes))


@pytest.mark.parametrize("extra", [{}, {**GATED, "localization_init": "position_gated"}])
def test_signal_time_masks(write_config, extra):
    path = write_config("ecg", model_name=MODEL_1D, artifact="spike", max_localization_samples=5,
                        cav_labels="ground_truth", **extra)
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
