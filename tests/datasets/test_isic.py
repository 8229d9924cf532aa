"""ISIC 2019 loader on a tiny tree in the official layout."""
import json

import numpy as np
import pytest
import torch

from datasets import get_dataset
from tests.datasets.fixture_trees import isic_tree, truncate, write_mask
from utils.errors import UserError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return isic_tree(tmp_path_factory.mktemp("isic"))


def _load(root, name="isic", **options):
    return get_dataset(name, img_size=32, data_paths=[str(root)], dataset_options=options)


def test_labels_and_seeded_stratified_split(root):
    data = _load(root)
    assert data.class_names == ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
    ids = {s: set(split.sample_ids) for s, split in data.items()}
    assert sum(map(len, ids.values())) == 20 and "ISIC_9999999" not in set.union(*ids.values())  # UNK row dropped
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    for _, split in data.items():
        expected = [0 if int(i[5:]) < 10 else 1 for i in split.sample_ids]
        assert split.labels.tolist() == expected
        assert set(split.labels) == {0, 1}  # stratified: both classes in every split
    assert ids == {s: set(split.sample_ids) for s, split in _load(root).items()}  # deterministic
    assert ids != {s: set(split.sample_ids) for s, split in _load(root, split_seed=1).items()}
    x, y = data.train[0]
    assert x.shape == (3, 32, 32) and 0.0 <= data.train.load_raw(0).min() and data.train.load_raw(0).max() <= 1.0


def test_split_file_and_train_folder(tmp_path):
    root = isic_tree(tmp_path / "isic", n_per_class=5, folder="Train")
    rows = ["image,split"] + [f"ISIC_{i:07d},{['train', 'val', 'test'][i % 3]}" for i in range(10)]
    (tmp_path / "split.csv").write_text("\n".join(rows) + "\n")
    data = _load(root, split_file=str(tmp_path / "split.csv"))
    assert data.val.sample_ids == [f"ISIC_{i:07d}" for i in range(1, 10, 3)]


def test_annotated_artifacts_and_masks_survive_the_attacked_wrapper(tmp_path):
    root = isic_tree(tmp_path / "isic", n_per_class=5)
    (root / "artifacts.json").write_text(json.dumps({"ruler": ["ISIC_0000001", "ISIC_0000006"]}))
    write_mask(root / "masks" / "ruler" / "ISIC_0000001.png", box=(0, 0, 8, 16))
    options = {"artifact_annotations": "artifacts.json", "artifact_masks": "masks"}
    for name in ("isic", "isic_attacked"):
        data = _load(root, name, **options)
        everything = {i: (split, k) for _, split in data.items() for k, i in enumerate(split.sample_ids)}
        split, idx = everything["ISIC_0000001"]
        assert "ruler" in split.artifact_names and split.artifact_labels("ruler")[idx]
        mask = split.get_mask(idx, "ruler")
        assert mask.dtype == torch.bool and mask.shape == (32, 32) and mask[:16].all() and not mask[16:].any()
        other, j = everything["ISIC_0000006"]
        assert other.get_mask(j, "ruler") is None  # annotated, but no mask file
        plain, k = everything["ISIC_0000002"]
        assert not plain.artifact_labels("ruler")[k] and not plain.get_mask(k, "ruler").any()
    assert data.train.artifact_names == ["microscope", "ruler"]
    mel = data.train.labels == 0
    assert not data.train.artifact_labels("microscope")[~mel].any()  # microscope only in MEL


def test_missing_root_points_to_readme(tmp_path):
    with pytest.raises(UserError, match=r"dataset 'isic' needs its root folder: .*data_paths.isic"):
        get_dataset("isic", data_paths=[])
    with pytest.raises(UserError, match=r"data root not found: .*nowhere.*README.md, 'Real data sets' > 'ISIC 2019'"):
        _load(tmp_path / "nowhere")


def test_missing_column_names_file_and_column(tmp_path):
    root = isic_tree(tmp_path / "isic", n_per_class=5)
    csv = root / "ISIC_2019_Training_GroundTruth.csv"
    csv.write_text(csv.read_text().replace("VASC", "VASCULAR"))
    with pytest.raises(UserError, match=r"ISIC_2019_Training_GroundTruth.csv: missing column 'VASC'"):
        _load(root)


def test_corrupt_and_missing_images(tmp_path):
    root = isic_tree(tmp_path / "isic", n_per_class=5)
    broken = root / "ISIC_2019_Training_Input" / "ISIC_0000003.jpg"
    truncate(broken)
    data = _load(root)
    split = next(s for _, s in data.items() if "ISIC_0000003" in s.sample_ids)
    with pytest.raises(UserError, match=r"sample \d+ \('ISIC_0000003'\): cannot read .*ISIC_0000003.jpg"):
        split.load_raw(split.sample_ids.index("ISIC_0000003"))
    with pytest.warns(UserWarning, match=r"skipped 1 of 10 unreadable or missing files"):
        kept = _load(root, skip_corrupt=True)
    assert sum(len(s) for _, s in kept.items()) == 9
    (root / "ISIC_2019_Training_Input" / "ISIC_0000004.jpg").unlink()
    with pytest.raises(UserError, match=r"1 of 10 files are missing, e.g. .*ISIC_0000004.jpg"):
        _load(root)
    assert np.isfinite(kept.train.load_raw(0).numpy()).all()


def test_missing_ground_truth_or_image_folder_points_to_layout(tmp_path):
    (tmp_path / "isic").mkdir()
    with pytest.raises(UserError, match=r"file not found: .*GroundTruth.csv \(download and layout: README.md"):
        _load(tmp_path / "isic")
    root = isic_tree(tmp_path / "other", n_per_class=5)
    (root / "ISIC_2019_Training_Input").rename(root / "images")
    with pytest.raises(UserError, match=r"image folder not found: .*ISIC_2019_Training_Input \(or .*Train; download"):
        _load(root)
