"""Re-evaluation after mitigation: subsets, artifact relevance, TCAV, heatmaps, comparison table."""
import json

import numpy as np
import pytest
import torch
import yaml

from datasets import get_dataset
from models import get_model
from tests.conftest import TINY_DATA
from utils.checkpoint import save_checkpoint
from utils.evaluation.relevance import artifact_relevance, artifact_samples, dilate, relevance_share
from utils.lrp.attribution import get_attributor


@pytest.fixture(scope="module")
def splits():
    return get_dataset("synth_derm", img_size=32, seed=0, dataset_options=TINY_DATA["dataset_options"],
                       artifact="band_aid")


def test_subsets_really_contain_or_lack_the_artifact(splits):
    test = splits.test
    clean, attacked, ch = (test.with_mode(m) for m in ("clean", "attacked", "ch"))
    assert not clean.artifact_labels("band_aid").any()
    assert attacked.artifact_labels("band_aid").all()
    labels = ch.artifact_labels("band_aid")
    assert labels.any() and not labels.all()
    for i in range(4):
        assert not clean.get_mask(i, "band_aid").any()
        assert attacked.get_mask(i, "band_aid").any()
        # the same lesion: the attacked image differs from the clean one only where the artifact is
        diff = (attacked.load_raw(i) - clean.load_raw(i)).abs().sum(0) > 1e-6
        assert not (diff & ~attacked.get_mask(i, "band_aid")).any()
    assert len(artifact_samples(attacked, "band_aid")) == len(test)
    assert len(artifact_samples(clean, "band_aid")) == 0


def test_relevance_share_and_dilation():
    heatmap = torch.zeros(1, 3, 5, 5)
    heatmap[0, 0, 2, 2] = 3.0
    heatmap[0, 1, 0, 0] = 1.0
    heatmap[0, 2, 4, 4] = -5.0  # negative relevance does not count
    mask = torch.zeros(1, 5, 5, dtype=torch.bool)
    mask[0, 2, 2] = True
    assert relevance_share(heatmap, mask).item() == pytest.approx(0.75)
    grown = dilate(mask, 1)
    assert grown.sum() == 9 and grown[0, 1:4, 1:4].all()
    assert torch.isnan(relevance_share(torch.zeros(1, 3, 5, 5), mask)).all()


def test_artifact_relevance_floor_is_the_same_region_without_the_artifact(splits):
    torch.manual_seed(0)
    model = get_model("tiny_vgg", splits.n_classes).eval()
    attacked, clean = splits.test.with_mode("attacked"), splits.test.with_mode("clean")
    indices = np.arange(6)
    result = artifact_relevance(model, attacked, "band_aid", indices, batch_size=4, without=clean)
    # the floor is the share of the attacked masks' region on the clean images, sample by sample
    on_clean = []
    for i in indices:
        x = clean.normalize(clean.load_raw(int(i)))[None]
        heatmap = get_attributor(model).attribute(x, targets=torch.tensor([clean.label(int(i))])).heatmap
        on_clean.append(relevance_share(heatmap, dilate(attacked.get_mask(int(i), "band_aid")[None], 1)).item())
    assert result["without_artifact"] == pytest.approx(np.nanmean(on_clean), abs=1e-6)
    assert result["excess"] == pytest.approx(result["artifact_relevance"] - result["without_artifact"])
    assert 0 < result["without_artifact"] < 1
    assert result["without_artifact"] != pytest.approx(result["artifact_relevance"])
    same = artifact_relevance(model, attacked, "band_aid", indices, batch_size=4, without=attacked)
    assert same["excess"] == pytest.approx(0.0, abs=1e-7)
    assert "excess" not in artifact_relevance(model, attacked, "band_aid", indices, batch_size=4)


def test_evaluation_steps_end_to_end(splits, tmp_path, monkeypatch):
    from experiments.evaluation import (compare_methods, compute_artifact_relevance, evaluate_by_subset_attacked,
                                        measure_tcav)
    from experiments.evaluation.qualitative import plot_heatmaps
    from experiments.mitigation_experiments.start_model_correction import main as correct

    torch.manual_seed(0)
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, get_model("tiny_vgg", splits.n_classes), "tiny_vgg", splits.n_classes)
    config_dir = tmp_path / "configs"
    config_dir.mkdir()
    base = {**TINY_DATA, "model_name": "tiny_vgg", "artifact": "band_aid", "ckpt_path": str(ckpt), "batch_size": 16,
            "output_dir": str(tmp_path / "out"), "eval_splits": ["test"], "eval_max_samples": 8, "n_heatmaps": 2,
            "layer_name": "features.10"}
    # mean pooling: the projection removes every uniform shift along v, so TCAV sensitivity is 0
    path = config_dir / "pclarc.yaml"
    path.write_text(yaml.safe_dump({**base, "method": "PClarc", "cav_mode": "cavs_mean"}))
    correct(["--config_file", str(path)])

    subsets = evaluate_by_subset_attacked.main(["--config_file", str(path)])
    assert set(subsets) == {"original", "corrected", "paired_tests"}
    assert set(subsets["corrected"]["test"]) == {"clean", "attacked", "ch"}
    paired = subsets["paired_tests"]["test"]["attacked"]  # corrected vs original on the same images
    assert paired["accuracy"]["a"] == subsets["original"]["test"]["attacked"]["accuracy"]
    assert paired["accuracy"]["b"] == subsets["corrected"]["test"]["attacked"]["accuracy"]
    assert 0 <= paired["accuracy"]["p_value"] <= 1 and 0 <= paired["auroc"]["p_value"] <= 1
    relevance = compute_artifact_relevance.main(["--config_file", str(path)])
    for model in ("original", "corrected"):
        assert 0.0 <= relevance[model]["artifact_relevance"] <= 1.0 and relevance[model]["n"] == 8
        assert relevance[model]["excess"] == pytest.approx(relevance[model]["artifact_relevance"]
                                                           - relevance[model]["without_artifact"])
    tcav = measure_tcav.main(["--config_file", str(path)])
    for cls, scores in tcav["corrected"]["original_cav"].items():
        assert scores["sensitivity"] < 1e-5 * max(1e-12, tcav["original"]["original_cav"][cls]["sensitivity"]) + 1e-7
    assert tcav["original"]["original_cav"][tcav["biased_class"]]["sensitivity"] > 0
    # the original model's scores are the same for every correction of it: computed once
    from utils.evaluation import steps as evaluation_steps

    explained = []
    derivatives = evaluation_steps.directional_derivatives
    monkeypatch.setattr(evaluation_steps, "directional_derivatives",
                        lambda model, *args: explained.append(model) or derivatives(model, *args))
    again = measure_tcav.main(["--config_file", str(path)])
    assert len(explained) == 2 and again["original"] == tcav["original"]  # the corrected model, two CAVs
    heatmaps = plot_heatmaps.main(["--config_file", str(path)])
    assert heatmaps.is_file()
    rows = compare_methods.main(["--config_dir", str(config_dir)])
    assert [r["method"] for r in rows] == ["original", "PClarc"]
    out = tmp_path / "out" / "evaluation" / "synth_derm" / "tiny_vgg"
    assert (out / "comparison.csv").is_file() and (out / "comparison.md").is_file()
    before = (out / "comparison.md").read_text()
    compare_methods.main(["--config_dir", str(config_dir), "--name", "pipeline_demo"])  # side by side, not over it
    assert (out / "pipeline_demo.md").is_file() and (out / "pipeline_demo_grid.csv").is_file()
    assert (out / "comparison.md").read_text() == before
    saved = json.loads((out / "pclarc" / "subsets.json").read_text())
    assert np.isfinite(saved["corrected"]["test"]["clean"]["accuracy"])
    assert np.isfinite(rows[1]["ar_excess"]) and "ar_excess" in (out / "comparison.md").read_text()
