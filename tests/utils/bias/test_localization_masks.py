"""Mask thresholds, blur scaling, initial relevance rules and metrics of localization."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from utils.bias.localization import (artifact_relevance, blur_parameters, cav_initial_relevance, heatmap_masks,
                                     iou, list_thresholds, otsu_threshold, peak_regions, projection,
                                     projection_quantile, refine_mask, relative_threshold, scaled_radius)
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
    # no positive relevance: nothing to score (a 0 would reward a model whose relevance vanished)
    assert np.isnan(artifact_relevance(-torch.ones(2, 2), target))


def test_one_artifact_relevance_for_localization_evaluation_and_rrr():
    from model_training.corrections.rrr import PENALTIES
    from utils.evaluation.relevance import relevance_share

    torch.manual_seed(0)
    relevance = torch.randn(4, 3, 6, 6)
    relevance[3] = -relevance[3].abs()  # one heatmap without positive relevance
    mask = torch.rand(4, 6, 6) > 0.6
    batch = relevance_share(relevance, mask)
    single = [artifact_relevance(r.sum(0), m) for r, m in zip(relevance, mask)]
    assert np.allclose(batch[:3].numpy(), single[:3]) and np.isnan(single[3]) and torch.isnan(batch[3])
    penalty = PENALTIES["positive_share"](relevance, mask[:, None].float())
    assert torch.allclose(penalty[:3], batch[:3]) and penalty[3] == 0  # training: no relevance, no penalty


# --- mask clean-up ----------------------------------------------------------------------------


def _box(shape, rows, cols):
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    return mask


def test_power_lets_otsu_cover_an_object_with_sparse_peaks():
    # z+ heatmaps: weak relevance over the object, a few strong pixels (edges, dots)
    heatmaps = torch.zeros(1, 32, 32)
    heatmaps[0, 8:16, 4:28] = 0.05
    heatmaps[0, 10, 8] = heatmaps[0, 13, 16] = heatmaps[0, 9, 24] = 1.0
    target = torch.from_numpy(_box((32, 32), slice(8, 16), slice(4, 28)))
    raw = heatmap_masks(heatmaps, "otsu", kernel_224=1, sigma_224=0)
    assert raw.sum() == 3  # Otsu separates the peaks from the rest
    rooted = heatmap_masks(heatmaps, "otsu", kernel_224=1, sigma_224=0, power=0.5)
    assert iou(rooted[0], target) == 1.0
    with pytest.raises(UserError):
        heatmap_masks(heatmaps, power=0)


def test_relative_threshold():
    assert relative_threshold(np.array([0.0, 0.5, 2.0]), relative=0.25) == 0.5
    heatmaps = torch.zeros(1, 16, 16)
    heatmaps[0, 2:6, 2:6] = 1.0
    heatmaps[0, 10:14, 10:14] = 0.2
    masks = heatmap_masks(heatmaps, "relative", kernel_224=1, sigma_224=0, relative=0.5)
    assert masks[0].sum() == 16 and masks[0, 3, 3]
    assert "relative" in list_thresholds()


def test_closing_bridges_gaps_and_keeps_border_objects():
    two_parts = _box((20, 20), slice(5, 9), slice(2, 8)) | _box((20, 20), slice(5, 9), slice(10, 16))
    closed = refine_mask(two_parts, closing=2)
    assert closed[6:8, 2:16].all() and ndimage.label(closed)[1] == 1  # the 2-pixel gap is bridged
    assert not closed[:4].any() and not closed[10:].any()  # nothing grows outwards
    at_border = _box((20, 20), slice(0, 4), slice(0, 20))
    assert np.array_equal(refine_mask(at_border, closing=3), at_border)  # padded: not eroded at the border
    assert np.array_equal(refine_mask(two_parts), two_parts)  # every step off: unchanged


def test_fill_holes():
    ring = _box((12, 12), slice(2, 10), slice(2, 10)) & ~_box((12, 12), slice(4, 8), slice(4, 8))
    assert refine_mask(ring, fill_holes=True)[2:10, 2:10].all()
    segments = np.zeros(30, dtype=bool)
    segments[3:8] = segments[12:20] = True
    assert refine_mask(segments, fill_holes=True)[3:20].all()  # signals: gaps between segments


def test_most_relevant_component():
    small = _box((16, 16), slice(1, 3), slice(1, 3))
    large = _box((16, 16), slice(8, 14), slice(8, 14))
    relevance = np.where(small, 5.0, 0.0) + np.where(large, 0.1, 0.0)
    kept = refine_mask(small | large, components="most_relevant", relevance=relevance)
    assert np.array_equal(kept, small)  # most relevance, not most pixels
    assert np.array_equal(refine_mask(small | large, components="most_relevant"), large)  # no relevance: size
    with pytest.raises(UserError):
        refine_mask(small, components="largest")


def test_heatmap_masks_apply_the_clean_up_in_order():
    heatmaps = torch.zeros(1, 32, 32)
    heatmaps[0, 4:12, 4:9] = 1.0
    heatmaps[0, 4:12, 11:16] = 1.0  # an object split by a 2-pixel gap
    heatmaps[0, 24:27, 24:27] = 0.9  # a small distractor
    masks = heatmap_masks(heatmaps, "otsu", kernel_224=1, sigma_224=0, closing_224=2 * 224 / 32,
                          fill_holes=True, components="most_relevant")
    assert masks[0, 6:10, 4:16].all() and not masks[0, 20:].any()
    assert ndimage.label(masks[0].numpy())[1] == 1
    assert scaled_radius(32, 14) == 2 and scaled_radius(224, 10) == 10 and scaled_radius(64, 0) == 0


# --- gated initial relevance --------------------------------------------------------------------


def test_gate_threshold():
    activation = torch.tensor([[[[1.0, 1.0, 2.0]], [[0.0, 3.0, 1.5]]]])  # projections 1, -2, 0.5
    v = np.array([1.0, -1.0])
    assert torch.equal(projection(activation, v), torch.tensor([[[1.0, -2.0, 0.5]]]))
    low = cav_initial_relevance(v, 1, "position_gated", threshold=-3.0)(activation)
    assert torch.equal(low, cav_initial_relevance(v, 1, "channelwise")(activation))  # every position passes
    high = cav_initial_relevance(v, 1, "position_gated", threshold=0.75)(activation)
    assert high[..., 0].sum() == 1 and high[..., 1:].sum() == 0


def test_peak_region_keeps_the_region_of_the_strongest_position():
    v = np.array([1.0])
    activation = torch.zeros(1, 1, 6, 6)
    activation[0, 0, 0:2, 0:3] = 1.0  # a weaker region, apart
    activation[0, 0, 4:6, 2:6] = 2.0  # the strongest region
    activation[0, 0, 5, 5] = 3.0
    kept = cav_initial_relevance(v, 1, "peak_region", threshold=0.5)(activation)
    assert torch.equal(kept, activation * (activation >= 2))
    assert not cav_initial_relevance(v, 1, "peak_region", threshold=5.0)(activation).any()  # nothing gated
    diagonal = peak_regions(torch.eye(3)[None], torch.eye(3, dtype=torch.bool)[None])
    assert diagonal.sum() == 3  # full connectivity: diagonal neighbours are one region
    with pytest.raises(UserError):  # tokens (channels last) have no spatial neighbourhood
        cav_initial_relevance(np.ones(2), -1, "peak_region")(torch.ones(1, 3, 2))


class _CapturingAttributor:
    """Calls ``init_rel`` on the input itself, as if the start layer were the identity."""

    def attribute(self, x, start_layer=None, init_rel=None):
        init_rel(x)


def test_projection_quantile_over_every_position():
    v = np.array([1.0, 0.0])
    batches = [torch.arange(8.0).view(1, 2, 2, 2), torch.arange(8.0, 16.0).view(1, 2, 2, 2)]
    # projections: channel 0 of each sample: 0, 1, 2, 3 and 8, 9, 10, 11
    values = np.array([0, 1, 2, 3, 8, 9, 10, 11], dtype=float)
    got = projection_quantile(_CapturingAttributor(), batches, "layer", v, 0.75)
    assert got == pytest.approx(np.quantile(values, 0.75))
    with pytest.raises(UserError):
        projection_quantile(_CapturingAttributor(), [], "layer", v, 0.5)
