"""Mask thresholds, blur scaling, initial relevance rules and metrics of localization."""
import numpy as np
import pytest
import torch

from utils.bias.localization import (artifact_relevance, blur_parameters, cav_initial_relevance, heatmap_masks,
                                     iou, list_thresholds, otsu_threshold)
from utils.errors import UserError


def test_otsu_separates_two_modes():
    values = np.r_[np.full(900, 0.1), np.full(100, 0.9)]
    assert 0.1 <= otsu_threshold(values) < 0.9


def test_blur_scales_with_size():
    assert blur_parameters(224) == (7, 8.0)
    kernel, sigma = blur_parameters(64)
    assert kernel % 2 == 1 and sigma == pytest.approx(8 * 64 / 224)


@pytest.mark.parametrize("threshold", ["otsu", "percentile"])
def test_masks_binary_and_find_the_blob(threshold):
    heatmaps = torch.zeros(2, 32, 32)
    heatmaps[0, 4:12, 20:28] = 1.0
    masks = heatmap_masks(heatmaps, threshold, percentile=90)
    assert masks.dtype == torch.bool and masks.shape == (2, 32, 32)
    target = torch.zeros(32, 32, dtype=torch.bool)
    target[4:12, 20:28] = True
    assert iou(masks[0], target) > 0.5
    assert not masks[1].any()  # nothing relevant, nothing masked


def test_signal_masks_and_bad_threshold():
    heatmaps = torch.zeros(1, 100)
    heatmaps[0, 40:60] = 1.0
    assert heatmap_masks(heatmaps)[0, 45:55].all()
    with pytest.raises(UserError):
        heatmap_masks(heatmaps, "nope")
    assert {"otsu", "percentile"} <= set(list_thresholds())


def test_initial_relevance_rules():
    activation = torch.tensor([[[[1.0, 1.0]], [[0.0, 3.0]]]])  # (1, C=2, 1, 2)
    v = np.array([1.0, -1.0])
    channelwise = cav_initial_relevance(v, 1, "channelwise")(activation)
    assert torch.equal(channelwise, torch.tensor([[[[1.0, 1.0]], [[0.0, 0.0]]]]))
    gated = cav_initial_relevance(v, 1, "position_gated")(activation)
    # second position projects to 1 - 3 < 0: the distractor position is removed
    assert torch.equal(gated, torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]]]))
    tokens = torch.ones(1, 3, 2)  # ViT layout, channels last
    assert cav_initial_relevance(v, -1)(tokens)[..., 1].abs().sum() == 0


def test_artifact_relevance():
    heatmap = torch.tensor([[2.0, -1.0], [1.0, 1.0]])
    target = torch.tensor([[True, True], [False, False]])
    assert artifact_relevance(heatmap, target) == pytest.approx(0.5)
    assert artifact_relevance(torch.zeros(2, 2), target) == 0.0
