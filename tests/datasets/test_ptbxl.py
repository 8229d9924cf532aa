"""PTB-XL loader on a tiny native release (WFDB records written with ``wfdb.wrsamp``)."""
import numpy as np
import pytest
import torch

from datasets import get_dataset
from tests.datasets.fixture_trees import ptbxl_tree
from utils.errors import UserError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return ptbxl_tree(tmp_path_factory.mktemp("ptb-xl"))


def _load(root, name="ptbxl", **options):
    return get_dataset(name, data_paths=[str(root)], dataset_options=options)


def test_fold_split_and_superclass_labels(root):
    data = _load(root)
    assert data.class_names == ["HYP", "MI", "NORM", "STTC"]
    folds = {i + 1: 1 + i % 10 for i in range(14)}
    expected = {"train": range(1, 9), "val": [9], "test": [10]}
    for name, split in data.items():
        assert split.multi_label and split.modality == "signal"
        assert all(folds[int(i)] in expected[name] for i in split.sample_ids)
    ids = [i for _, split in data.items() for i in split.sample_ids]
    assert "4" not in ids and "8" not in ids  # rhythm-only records carry no diagnostic label
    train = data.train
    row = train.labels[train.sample_ids.index("2")]  # {'LVH': 50, 'NDT': 100}
    assert row.tolist() == [1.0, 0.0, 0.0, 1.0]
    x, y = train[0]
    assert x.shape == (12, 1000) and y.shape == (4,)
    assert torch.allclose(train.load_raw(0), train.base.load_raw(0))


def test_subclasses_and_attacked_default(root):
    assert _load(root, label_level="subclass").class_names == ["IMI", "LVH", "NORM", "STTC"]
    data = _load(root, "ptbxl_attacked")  # published setting: defective lead in LVH, p = 0.5
    assert data.train.artifact_names == ["defective_lead"]
    attacked = data.train.with_mode("attacked")
    x, clean = attacked.load_raw(0), attacked.with_mode("clean").load_raw(0)
    mask = attacked.get_mask(0, "defective_lead")
    assert mask.shape == (12, 1000) and mask[1, :100].all() and mask.sum() == 100
    assert torch.equal((x != clean), mask)
    assert torch.allclose(x[1, :100], 2 * clean.max().expand(100))


def test_errors(tmp_path, root):
    with pytest.raises(UserError, match=r"data root not found: .*'PTB-XL'"):
        _load(tmp_path / "missing")
    with pytest.raises(UserError, match="label_level: 'codes'"):
        _load(root, label_level="codes")
    broken = ptbxl_tree(tmp_path / "ptb", n_records=10)
    dat = broken / "records100" / "00000" / "00002_lr.dat"
    dat.write_bytes(dat.read_bytes()[:3000])
    split = _load(broken).train
    with pytest.raises(UserError, match=r"sample \d+ \('2'\): cannot read .*00002_lr"):
        split.load_raw(split.sample_ids.index("2"))
    with pytest.warns(UserWarning, match="skipped 1 of 8"):
        assert "2" not in _load(broken, skip_corrupt=True).train.sample_ids
    database = broken / "ptbxl_database.csv"
    database.write_text(database.read_text().replace("strat_fold", "fold"))
    with pytest.raises(UserError, match="ptbxl_database.csv: missing column 'strat_fold'"):
        _load(broken)
    database.write_text(database.read_text().replace("fold", "strat_fold").replace("\"{'IMI': 80.0}\"", "IMI"))
    with pytest.raises(UserError, match="column 'scp_codes' of ecg_id 3 is not a dict literal"):
        _load(broken)
    assert np.isfinite(split.labels).all()
