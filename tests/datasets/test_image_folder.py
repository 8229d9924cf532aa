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


def test_files_outside_the_root_only_with_allow_outside_root(tmp_path):
    """A symlinked image folder on another disk is refused, unless the config opts in."""
    import shutil

    root = image_folder_tree(tmp_path / "a")
    shutil.move(root / "images", tmp_path / "other_disk")
    (root / "images").symlink_to(tmp_path / "other_disk")
    with pytest.raises(UserError, match=r"labels.csv line 2: file .*img_00.png resolves to .*other_disk.*, outside "
                                        r"the data root"):
        _load(root)
    data = _load(root, dataset_options={"allow_outside_root": True})
    assert len(data.train) == 8 and data.train.load_raw(0).shape == (3, 32, 32)


def test_16_bit_grayscale_is_scaled_by_its_real_range(tmp_path):
    """A 12-bit ramp stored in a 16-bit PNG (0-4095, as medical exports are) spans [0, 1] instead of saturating;
    bit_depth fixes the scale."""
    from PIL import Image

    root = image_folder_tree(tmp_path / "a")
    ramp = np.tile(np.linspace(0, 4095, 32), (32, 1)).round().astype(np.uint16)
    Image.fromarray(ramp).save(root / "images" / "img_00.png")
    assert Image.open(root / "images" / "img_00.png").mode == "I;16"
    image = _load(root).train.load_raw(0)
    assert image.shape == (3, 32, 32) and torch.equal(image[0], image[1])
    row = image[0, 0]
    assert row[0] == 0 and abs(float(row[-1]) - 1.0) < 1e-6 and bool((row[1:] > row[:-1]).all())
    assert float((image >= 1.0).float().mean()) <= 1 / 32 + 1e-6  # only the last column is white, not 92%
    sixteen = _load(root, dataset_options={"bit_depth": 16}).train.load_raw(0)
    assert abs(float(sixteen.max()) - 4095 / 65535) < 1e-6
    with pytest.raises(UserError, match="'bit_depth': a whole number of bits"):
        _load(root, dataset_options={"bit_depth": "twelve"})


def test_relative_data_root_export_and_training(tmp_path, monkeypatch):
    """The README's bring-your-own example with a relative root: export the embedded data to
    outputs/example_image_folder, name it relatively (config and local config), train with its annotated
    band-aids (masks read for the pasted subsets). Relative roots are relative to the working directory."""
    import yaml

    from datasets.export_image_folder import main as export_main
    from model_training.start_training import main as train_main
    monkeypatch.chdir(tmp_path)
    (tmp_path / "source.yaml").write_text(yaml.safe_dump({"dataset_name": "synth_derm", "img_size": 16,
                                                          "dataset_options": {"n_train": 24, "n_val": 8, "n_test": 8}}))
    export_main(["--config_file", "source.yaml", "--out", "outputs/example_image_folder"])
    local = {"data_paths": {"image_folder": "outputs/example_image_folder"}}
    (tmp_path / "local.yaml").write_text(yaml.safe_dump(local))
    monkeypatch.setenv("SHORTCUTLAB_LOCAL_CONFIG", str(tmp_path / "local.yaml"))
    training = {"dataset_name": "image_folder", "img_size": 16, "artifact": "band_aid", "num_epochs": 1,
                "batch_size": 8, "output_dir": "outputs"}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(training))
    metrics = train_main(["--config_file", "train.yaml"])
    assert set(metrics["test"]) == {"clean", "attacked", "ch"}  # masks found: pasted subsets
    training["data_paths"] = ["outputs/example_image_folder"]
    (tmp_path / "train_direct.yaml").write_text(yaml.safe_dump(training))
    assert train_main(["--config_file", "train_direct.yaml"])["test"].keys() == metrics["test"].keys()
