"""The four evaluation subsets of an inserted artifact, ``confounding`` above all: which samples carry the
target artifact in each, and that its mask is present exactly there."""
import numpy as np
import pytest
import torch

from datasets import get_dataset
from datasets.export_image_folder import export_image_folder
from datasets.with_artifacts import MODES
from utils.errors import UserError

SMALL = {"n_train": 40, "n_val": 8, "n_test": 24}


def _test_split(**kwargs):
    # the demo's shortcut: band-aids in a third of the benign images only; rulers in both classes
    return get_dataset("synth_derm", img_size=32, dataset_options=SMALL, artifact="band_aid", **kwargs).test


def _expected(split, mode):
    """Which samples must carry the band-aid in ``mode``, from the labels and the ``ch`` draw alone."""
    benign = split.labels == 0  # the class that had it in training (rate 0.33); melanoma's rate is 0
    return {"ch": split.with_mode("ch").artifact_labels("band_aid"), "clean": np.zeros(len(split), bool),
            "attacked": np.ones(len(split), bool), "confounding": ~benign}[mode]


@pytest.mark.parametrize("mode", MODES)
def test_the_target_artifact_is_where_the_mode_puts_it_and_its_mask_exactly_there(mode):
    split = _test_split()
    view = split.with_mode(mode)
    expected = _expected(split, mode)
    assert view.sample_ids == split.sample_ids  # every mode keeps every sample: paired comparisons
    assert np.array_equal(view.artifact_labels("band_aid"), expected)
    for idx in range(len(view)):
        assert bool(view.get_mask(idx, "band_aid").any()) == expected[idx], (mode, idx)
    if mode != "clean":  # the other artifacts stay as drawn for the training distribution
        assert np.array_equal(view.artifact_labels("ruler"), split.with_mode("ch").artifact_labels("ruler"))


def test_confounding_reverses_the_shortcut_and_differs_from_attacked():
    split = _test_split()
    confounding, attacked, clean = (split.with_mode(m) for m in ("confounding", "attacked", "clean"))
    benign, melanoma = np.flatnonzero(split.labels == 0), np.flatnonzero(split.labels == 1)
    assert len(benign) and len(melanoma)  # the tiny split has both classes
    # a melanoma gets the very band-aid attacked gives it (same draw), a benign image none
    for idx in melanoma[:3]:
        assert torch.equal(confounding.load_raw(idx), attacked.load_raw(idx))
        assert not torch.equal(confounding.load_raw(idx), clean.load_raw(idx))
    for idx in benign[:3]:
        assert not confounding.get_mask(idx, "band_aid").any()
        assert not torch.equal(confounding.load_raw(idx), attacked.load_raw(idx))
    # the lesion stays foreground where no band-aid covers it
    idx = melanoma[0]
    covered = confounding.get_mask(idx, "band_aid")
    assert not (confounding.get_foreground_mask(idx) & covered).any()


def test_confounding_follows_the_training_rates_of_any_class():
    # the artifact in melanomas only: confounding puts it into the benign images
    split = _test_split(artifacts={"band_aid": {"melanoma": 0.5}})
    assert np.array_equal(split.with_mode("confounding").artifact_labels("band_aid"), split.labels == 0)


@pytest.mark.parametrize("kwargs,message", [
    ({"artifacts": {"band_aid": {"benign": 0.3, "melanoma": 0.1}}}, "must occur in some classes and not in others"),
    ({"dataset_options": {**SMALL, "multi_label": True}}, "needs single-label data"),
])
def test_confounding_is_refused_where_it_is_undefined(kwargs, message):
    options = kwargs.pop("dataset_options", SMALL)
    split = get_dataset("synth_derm", img_size=32, dataset_options=options, artifact="band_aid", **kwargs).test
    with pytest.raises(UserError, match=message):
        split.with_mode("confounding")


def test_an_annotated_artifact_refuses_confounding_in_one_line(tmp_path):
    export_image_folder(get_dataset("synth_derm", img_size=32, dataset_options=SMALL), tmp_path / "export",
                        progress=False)
    test = get_dataset("image_folder", img_size=32, data_paths=[str(tmp_path / "export")], artifact="band_aid").test
    with pytest.raises(UserError, match="'confounding' needs an inserted artifact") as error:
        test.with_mode("confounding")
    assert "\n" not in str(error.value)
