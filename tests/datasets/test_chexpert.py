"""CheXpert loader on a tiny tree in the official (small) layout."""
import re

import numpy as np
import pytest
import torch

from datasets import get_dataset
from tests.datasets.fixture_trees import chexpert_tree, truncate, write_mask
from utils.errors import UserError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return chexpert_tree(tmp_path_factory.mktemp("data") / "CheXpert-v1.0-small")


def _load(root, name="chexpert", **options):
    return get_dataset(name, img_size=32, data_paths=[str(root)], dataset_options=options)


def _patients(split):
    return {re.search(r"patient(\d+)", i).group(1) for i in split.sample_ids}


def _cardiomegaly(root):
    """Sample key -> the raw Cardiomegaly cell of the fixture's CSV files."""
    import pandas as pd

    frames = [pd.read_csv(root / name, dtype=str, keep_default_na=False) for name in ("train.csv", "valid.csv")]
    frame = pd.concat(frames)
    return {p.split("/", 1)[1].removesuffix(".jpg"): v for p, v in zip(frame["Path"], frame["Cardiomegaly"])}


def test_patient_disjoint_split_frontal_only_and_three_channels(root):
    data = _load(root)
    assert data.class_names == ["no_cardiomegaly", "cardiomegaly"]
    patients = {s: _patients(split) for s, split in data.items()}
    assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"]
                or patients["val"] & patients["test"])
    assert sum(map(len, patients.values())) == 12  # train.csv and valid.csv pooled
    assert all("frontal" in i for _, split in data.items() for i in split.sample_ids)
    x = data.train.load_raw(0)
    assert x.shape == (3, 32, 32) and torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])  # grey repeated


@pytest.mark.parametrize("policy,uncertain_label", [("zeros", 0), ("ones", 1), ("ignore", None)])
def test_uncertain_label_policies(root, policy, uncertain_label):
    raw = _cardiomegaly(root)
    data = _load(root, uncertain=policy)
    seen = set()
    for _, split in data.items():
        for key, label in zip(split.sample_ids, split.labels):
            cell = raw[key]
            expected = {"1.0": 1, "0.0": 0, "": 0, "-1.0": uncertain_label}[cell]
            assert label == expected, (key, cell, label)
            seen.add(cell)
    assert ("-1.0" in seen) == (policy != "ignore")


def test_multi_label_target(root):
    data = _load(root, target="all")
    assert data.train.multi_label and data.train.labels.shape[1] == 14
    assert data.train.label(0).shape == (14,)
    edema = data.class_names.index("edema")
    assert set(np.unique(data.train.labels[:, edema])) <= {0.0, 1.0}


def test_pacemaker_labels_and_masks(tmp_path):
    root = chexpert_tree(tmp_path / "CheXpert-v1.0-small", n_train_patients=6, n_valid_patients=0)
    (tmp_path / "pm.csv").write_text("Path,PM\n"
                                     "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,1\n"
                                     "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg,0\n")
    write_mask(tmp_path / "masks" / "pacemaker" / "train" / "patient00001" / "study1" / "view1_frontal.png")
    data = _load(root, "chexpert_attacked", pacemaker_labels=str(tmp_path / "pm.csv"),
                 artifact_masks=str(tmp_path / "masks"))
    assert data.train.artifact_names == ["white_color", "pacemaker"]
    found = 0
    for _, split in data.items():
        labels = split.artifact_labels("pacemaker")
        for idx, key in enumerate(split.sample_ids):
            assert labels[idx] == (key == "train/patient00001/study1/view1_frontal")
            if labels[idx]:
                found += 1
                assert split.get_mask(idx, "pacemaker")[4:16, 4:16].all()
    assert found == 1


def test_bad_options_and_missing_root(tmp_path, root):
    with pytest.raises(UserError, match="uncertain: 'maybe'; valid: zeros, ones, ignore"):
        _load(root, uncertain="maybe")
    with pytest.raises(UserError, match="target: 'Cardio'"):
        _load(root, target="Cardio")
    with pytest.raises(UserError, match=r"data root not found: .*'CheXpert'"):
        _load(tmp_path / "missing")


def test_missing_column_and_corrupt_image(tmp_path):
    root = chexpert_tree(tmp_path / "CheXpert-v1.0-small", n_train_patients=6, n_valid_patients=0)
    image = root / "train" / "patient00003" / "study1" / "view1_frontal.jpg"
    truncate(image)
    data = _load(root)
    split = next(s for _, s in data.items() if "train/patient00003/study1/view1_frontal" in s.sample_ids)
    with pytest.raises(UserError, match=r"'train/patient00003/study1/view1_frontal'\): cannot read .*view1_frontal.jpg"):
        split.load_raw(split.sample_ids.index("train/patient00003/study1/view1_frontal"))
    csv = root / "train.csv"
    csv.write_text(csv.read_text().replace("Pleural Effusion", "Effusion"))
    with pytest.raises(UserError, match=r"train.csv: missing column 'Pleural Effusion'"):
        _load(root)
