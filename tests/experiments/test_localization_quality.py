"""Band-aid retrieval, simulated annotation and localization quality on a reduced configuration.

A module fixture trains its own tiny_vgg on 32-px synth_derm (500 training images, one thread:
seconds) and preprocesses train and test; the tests run the entry points on it. The
localization settings are read from the committed layer-sweep config of features.6 (at 32 px its
16x16 grid is what features.10 has at 64 px, where the full-size audit localizes best).

The issue's bars (test AUROC >= 0.95, AP >= 0.90, 90 % of the band-aid samples found after
inspecting < 2x as many, IoU and artifact relevance >= 0.5) apply to the full configuration (demo
checkpoint, 64 px, 2000 training images): see ``experiments/localization/README.md``. This
quickly trained model is weaker; the thresholds below were set from what this configuration
measured (in the comments); the localization bars are relative to chance and to the plain masks,
as the model itself differs between CPUs.
"""
import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, train_tiny_vgg
from experiments.localization import eval_localization_quantitatively
from experiments.sample_retrieval import refine, run_biased_sample_ranking

REDUCED = {"dataset_name": "synth_derm", "img_size": 32, "seed": 0, "model_name": "tiny_vgg",
           "artifact": "band_aid", "batch_size": 64, "config_name": "quality",
           "dataset_options": {"n_train": 500, "n_val": 8, "n_test": 200},
           # band-aids in half of the benign images: a shortcut a short training run does pick up
           "artifacts": {"band_aid": {"benign": 0.5}, "ruler": {"benign": 0.15, "melanoma": 0.15}},
           "splits": ["train", "test"], "retrieval_eval_splits": ["test"],
           "cav_labels": "ground_truth"}  # a controlled experiment: CAVs fit on the ground truth
COMMITTED = ROOT / "config_files/revealing/synth_derm/tiny_vgg_features.6.yaml"
EPOCHS = 30


def committed_localization():
    """``layer_name`` and every localization / mask key of the committed config."""
    config = yaml.safe_load(COMMITTED.read_text())
    return {k: v for k, v in config.items()
            if k == "layer_name" or k.startswith(("localization_", "mask_"))}


def _train(config, ckpt):
    from datasets import get_dataset_from_config

    train_tiny_vgg(get_dataset_from_config(config).train, config.img_size, ckpt, EPOCHS, milestones=[21, 27])


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    from utils.config.audit import AuditConfig
    from utils.config.loader import load_config
    from utils.preprocessing import preprocess

    # one thread: on a shared 2-core machine two threads per process contend and run ~10x slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("quality")
    base = {**REDUCED, "ckpt_path": str(folder / "model.pt"), "output_dir": str(folder / "outputs")}
    paths = {}
    for name, extra in (("retrieval", {"layer_name": "features.10"}), ("localization", committed_localization())):
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump({**base, **extra}))
    config = load_config(paths["retrieval"], AuditConfig)
    _train(config, folder / "model.pt")
    preprocess(config, progress=False)  # both configs share config_name, hence one preprocessing store
    yield paths
    torch.set_num_threads(threads)


def test_band_aid_retrieval(configs):
    results = run_biased_sample_ranking.main(["--config_file", str(configs["retrieval"])])
    test = results["variants"]["cavs_mean"]["splits"]["test"]
    assert test["auroc"] >= 0.84 and test["ap"] >= 0.70  # measured 0.877 / 0.754


def test_simulated_annotation(configs):
    result = refine.main(["--config_file", str(configs["retrieval"]), "--simulate"])
    assert result["n_seeds"] == 5 and result["target_recall"] == 0.9
    # 90 % of the band-aid samples found after inspecting this many per band-aid sample;
    # measured 1.43, random order needs ~2.7 (0.9 * 500 / 133 band-aid samples)
    assert result["inspected_per_artifact_sample"] < 1.6


def test_band_aid_localization(configs):
    from datasets import get_dataset_from_config
    from utils.bias.localization import heatmap_masks, iou, load_localized_heatmaps, load_localized_masks
    from utils.config.audit import AuditConfig
    from utils.config.loader import load_config
    from utils.paths import step_dir

    summary = eval_localization_quantitatively.main(["--config_file", str(configs["localization"])])
    assert summary["n"] >= 40

    # the mask clean-up of the committed settings beats the published plain blur + Otsu on the same heatmaps
    config = load_config(configs["localization"], AuditConfig)
    folder = step_dir(config, "localization", create=False) / "band_aid"
    heatmaps, masks = load_localized_heatmaps(folder), load_localized_masks(folder)
    test = get_dataset_from_config(config).test
    position = {sid: i for i, sid in enumerate(test.sample_ids)}
    ids = list(heatmaps)
    plain = heatmap_masks(torch.stack([heatmaps[s] for s in ids]))
    targets = [test.get_mask(position[s], "band_aid") for s in ids]
    plain_iou = np.mean([iou(m, t) for m, t in zip(plain, targets)])
    committed_iou = np.mean([iou(masks[s], t) for s, t in zip(ids, targets)])
    assert committed_iou == pytest.approx(summary["iou_mean"])
    # Bars relative to chance and to the plain masks: this quickly trained model differs between CPUs (other
    # floating-point kernels, same seed), and so do its absolute numbers. Measured (artifact relevance, IoU,
    # plain IoU) on three CPU set-ups: 0.286 / 0.244 / 0.119, 0.262 / 0.174 / 0.091 and, with oneDNN and MKL
    # held to AVX2, 0.210 / 0.127 / 0.072; the band-aid covers 10 % of the image (relevance by chance: 0.10).
    area = np.mean([float(t.float().mean()) for t in targets])
    assert summary["artifact_relevance_mean"] >= 1.8 * area
    assert committed_iou >= 0.10 and committed_iou >= plain_iou + 0.03
