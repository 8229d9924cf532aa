"""HyperKvasir loader on a tiny tree in the official layout."""
import pytest
import torch

from datasets import get_dataset
from tests.datasets.fixture_trees import hyper_kvasir_tree, truncate
from utils.errors import UserError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return hyper_kvasir_tree(tmp_path_factory.mktemp("hyper-kvasir"))


def _load(root, name="hyper_kvasir", **options):
    return get_dataset(name, img_size=32, data_paths=[str(root)], dataset_options=options)


def _all(data):
    return [(i, split.class_names[y]) for _, split in data.items() for i, y in zip(split.sample_ids, split.labels)]


def test_disease_task(root):
    data = _load(root)
    assert data.class_names == ["non_disease", "disease"]
    samples = _all(data)
    assert len(samples) == 20
    assert all((label == "disease") == (i.endswith(("polyps", "esophagitis-a"))) for i, label in samples)
    assert all(set(split.labels) == {0, 1} for _, split in data.items())  # stratified


def test_finding_task_and_filter_really_filters(root):
    data = _load(root, task="finding")
    assert data.class_names == ["cecum", "esophagitis-a", "polyps", "z-line"]
    assert all(i.endswith(label) for i, label in _all(data))
    filtered = _load(root, task="finding", findings=["polyps", "cecum"])
    assert filtered.class_names == ["cecum", "polyps"]
    samples = _all(filtered)
    assert len(samples) == 12 and all(i.endswith(("polyps", "cecum")) for i, _ in samples)
    with pytest.raises(UserError, match="unknown finding 'polyp'; valid: cecum, esophagitis-a, polyps, z-line"):
        _load(root, findings=["polyp"])


def test_attacked_variant_inserts_timestamps_into_disease_images(root):
    train = get_dataset("hyper_kvasir_attacked", img_size=32, data_paths=[str(root)], p_artifact=1.0).train
    assert train.target == "timestamp"
    drawn = train.artifact_labels("timestamp")
    assert drawn[train.labels == 1].all() and not drawn[train.labels == 0].any()
    idx = int(drawn.argmax())
    changed = (train.load_raw(idx) != train.with_mode("clean").load_raw(idx)).any(0)
    assert changed.any() and torch.equal(changed, train.get_mask(idx, "timestamp"))


def test_errors(tmp_path):
    with pytest.raises(UserError, match=r"data root not found: .*'HyperKvasir'"):
        _load(tmp_path / "missing")
    root = hyper_kvasir_tree(tmp_path / "hk")
    with pytest.raises(UserError, match="task: 'organ'; valid: disease, finding"):
        _load(root, task="organ")
    image = next((root / "labeled-images" / "lower-gi-tract" / "pathological-findings" / "polyps").glob("*.jpg"))
    truncate(image)
    data = _load(root)
    split = next(s for _, s in data.items() if image.stem in s.sample_ids)
    with pytest.raises(UserError, match=f"cannot read .*{image.name}"):
        split.load_raw(split.sample_ids.index(image.stem))
    csv = root / "labeled-images" / "image-labels.csv"
    csv.write_text(csv.read_text().replace("Finding", "Findings", 1))
    with pytest.raises(UserError, match="image-labels.csv: missing column 'Finding'"):
        _load(root)
