"""Bring-your-own image folder: labels, splits, artifact annotations, masks and foreground masks."""
import numpy as np
import pytest
import torch

from datasets import get_dataset
from tests.datasets.fixture_trees import image_folder_tree, truncate
from utils.errors import UserError


def _load(root, name="image_folder", **kwargs):
    return get_dataset(name, img_size=32, data_paths=[str(root)], **kwargs)


def test_labels_splits_from_column_and_seeded(tmp_path):
    data = _load(image_folder_tree(tmp_path / "a"))
    assert data.class_names == ["benign", "malignant"]
    assert data.val.sample_ids == ["img_04.png", "img_10.png"] and data.test.sample_ids == ["img_05.png", "img_11.png"]
    assert data.train.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    seeded = _load(image_folder_tree(tmp_path / "b", with_split=False))
    assert sorted(len(s) for _, s in seeded.items()) == [2, 2, 8]
    ordered = _load(tmp_path / "a", dataset_options={"classes": ["malignant", "benign"]})
    assert ordered.class_names == ["malignant", "benign"] and ordered.train.labels.tolist()[:4] == [1, 1, 1, 1]


def test_artifacts_masks_and_foreground(tmp_path):
    train = _load(image_folder_tree(tmp_path / "a")).train  # wrapped like every registered data set
    assert train.artifact_names == ["ruler"]
    labels = train.artifact_labels("ruler")
    assert [train.sample_ids[i] for i in np.flatnonzero(labels)] == ["img_00.png", "img_03.png", "img_07.png"]
    top = train.get_mask(train.sample_ids.index("img_00.png"), "ruler")
    assert top.shape == (32, 32) and top[:8].all() and not top[8:].any()
    assert train.get_mask(train.sample_ids.index("img_03.png"), "ruler")[24:].all()  # mask file alone marks it
    assert train.get_mask(train.sample_ids.index("img_07.png"), "ruler") is None  # listed, no mask file
    assert not train.get_mask(train.sample_ids.index("img_01.png"), "ruler").any()
    foreground = train.get_foreground_mask(0)
    assert foreground.dtype == torch.bool and foreground[8:24, 8:24].all() and not foreground[:8].any()


def test_attacked_variant_needs_an_artifact_and_keeps_annotations(tmp_path):
    root = image_folder_tree(tmp_path / "a")
    with pytest.raises(UserError, match="needs 'artifact_type'"):
        _load(root, "image_folder_attacked")
    train = _load(root, "image_folder_attacked", artifact_type="band_aid", attacked_classes=["malignant"],
                  p_artifact=1.0).train
    assert train.artifact_names == ["band_aid", "ruler"]
    assert np.array_equal(train.artifact_labels("band_aid"), train.labels == 1)
    assert train.artifact_labels("ruler").sum() == 3
    with pytest.raises(UserError, match="artifact 'defective_lead' is for signal data, not image data"):
        _load(root, "image_folder_attacked", artifact_type="defective_lead", attacked_classes=["malignant"])


def test_errors(tmp_path):
    with pytest.raises(UserError, match=r"data root not found: .*'Bring your own images'"):
        _load(tmp_path / "missing")
    root = image_folder_tree(tmp_path / "a")
    truncate(root / "images" / "img_02.png")
    with pytest.raises(UserError, match=r"train sample 2 \('img_02.png'\): cannot read .*img_02.png"):
        _load(root).train.load_raw(2)
    with pytest.warns(UserWarning, match="skipped 1 of 12"):
        assert len(_load(root, dataset_options={"skip_corrupt": True}).train) == 7
    (root / "labels.csv").write_text((root / "labels.csv").read_text().replace("label", "class", 1))
    with pytest.raises(UserError, match="labels.csv: missing column 'label'"):
        _load(root)


def test_export_of_the_embedded_data_loads_back_identically(tmp_path, write_config):
    """datasets.export_image_folder writes the bring-your-own layout; loading it gives the same
    images (up to 8-bit rounding), labels, splits, artifact annotations, masks and foreground."""
    from datasets.export_image_folder import main as export_main

    config = write_config(dataset_name="synth_derm", img_size=32,
                          dataset_options={"n_train": 12, "n_val": 4, "n_test": 4})
    source = get_dataset("synth_derm", img_size=32, dataset_options={"n_train": 12, "n_val": 4, "n_test": 4})
    summary = export_main(["--config_file", str(config), "--out", str(tmp_path / "export")])
    assert summary["samples"] == {"train": 12, "val": 4, "test": 4}
    exported = _load(tmp_path / "export")
    assert exported.class_names == source.class_names
    for name, split in source.items():
        copy = exported.get(name)
        assert [s.removesuffix(".png") for s in copy.sample_ids] == split.sample_ids
        assert copy.labels.tolist() == split.labels.tolist()
        for artifact in split.artifact_names:
            assert copy.artifact_labels(artifact).tolist() == split.artifact_labels(artifact).tolist()
        for i in range(len(split)):
            assert (copy.load_raw(i) - split.load_raw(i)).abs().max() <= 0.5 / 255 + 1e-6
            assert torch.equal(copy.get_foreground_mask(i), split.get_foreground_mask(i))
            for artifact in split.artifact_names:
                if split.artifact_labels(artifact)[i]:
                    assert torch.equal(copy.get_mask(i, artifact), split.get_mask(i, artifact))
    assert sum(summary["artifacts"].values()) > 0  # the check above compared some masks


def test_export_refuses_a_non_empty_folder(tmp_path, write_config, capsys):
    from datasets.export_image_folder import main as export_main

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        export_main(["--config_file", str(write_config(dataset_name="synth_derm")), "--out", str(tmp_path / "taken")])
    assert exit_info.value.code == 2 and "not empty" in capsys.readouterr().err
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
