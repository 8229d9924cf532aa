"""Annotated artifacts: clean/attacked subsets made by pasting cut-outs of masked training images."""
import json
import pickle

import numpy as np
import pytest
import torch

from datasets import get_dataset
from datasets.export_image_folder import export_image_folder
from datasets.pasted_artifacts import PastedArtifactDataset
from tests.datasets.fixture_trees import image_folder_tree, write_mask

SIZES = {"n_train": 40, "n_val": 8, "n_test": 16}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A tiny synth_derm written as an image folder: its band-aids become annotated artifacts."""
    root = tmp_path_factory.mktemp("pasted") / "export"
    export_image_folder(get_dataset("synth_derm", img_size=32, dataset_options=SIZES), root, progress=False)
    return root


def _load(root, seed=0, **kwargs):
    return get_dataset("image_folder", img_size=32, seed=seed, data_paths=[str(root)], **kwargs)


def _box(mask):
    rows, cols = np.flatnonzero(mask.any(1).numpy()), np.flatnonzero(mask.any(0).numpy())
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def test_clean_has_the_samples_without_the_artifact_and_attacked_every_sample(export):
    test = _load(export, artifact="band_aid").test
    assert isinstance(test, PastedArtifactDataset) and test.target == "band_aid"
    carries = test.artifact_labels("band_aid")
    assert carries.any() and not carries.all()  # the tiny data has both kinds
    clean, attacked = test.with_mode("clean"), test.with_mode("attacked")
    expected = [s for s, c in zip(test.sample_ids, carries) if not c]
    assert clean.sample_ids == expected and attacked.sample_ids == test.sample_ids
    assert clean.labels.tolist() == test.labels[~carries].tolist() and attacked.labels.tolist() == test.labels.tolist()
    for i in np.flatnonzero(carries):  # a sample that carries the artifact is attacked as it is
        assert torch.equal(attacked.load_raw(i), test.load_raw(i))
        assert torch.equal(attacked.get_mask(i, "band_aid"), test.get_mask(i, "band_aid"))
    assert not clean.artifact_labels("band_aid").any() and attacked.artifact_labels("band_aid").all()
    assert clean.artifact_labels("ruler").tolist() == test.artifact_labels("ruler")[~carries].tolist()
    assert test.with_mode("ch").sample_ids == test.sample_ids and torch.equal(test.load_raw(0), test.base.load_raw(0))


def test_pasted_pixels_are_a_training_cut_out_and_the_rest_is_the_clean_image(export):
    data = _load(export, artifact="band_aid")
    train, test = data.train, data.test
    clean, attacked = test.with_mode("clean"), test.with_mode("attacked")
    for c, i in enumerate(np.flatnonzero(~test.artifact_labels("band_aid"))):
        x, before, pasted = attacked.load_raw(i), clean.load_raw(c), attacked.get_mask(i, "band_aid")
        assert pasted.any() and torch.equal(x[:, ~pasted], before[:, ~pasted])
        source, flip_h, flip_v, keep, _ = attacked.placement(i)
        s = int(attacked.sources.indices[source])
        assert train.artifact_labels("band_aid")[s]
        image, mask = train.load_raw(s), train.get_mask(s, "band_aid")
        rows, cols = _box(mask)
        patch, cut = image[:, rows, cols], mask[rows, cols]
        dims = [d for d, flip in ((-1, flip_h), (-2, flip_v)) if flip]
        patch, cut = (patch.flip(dims), cut.flip(dims)) if dims else (patch, cut)
        at_rows, at_cols = _box(pasted)
        assert torch.equal(pasted[at_rows, at_cols], cut)  # the whole mask, flipped, fits inside the image
        assert torch.equal(x[:, at_rows, at_cols][:, cut], patch[:, cut])
        if keep:
            assert (at_rows.start, at_cols.start) == (rows.start, cols.start)


def test_same_seed_same_images_other_seed_other_places(export):
    a, b = (_load(export, artifact="band_aid").test.with_mode("attacked") for _ in range(2))
    other = _load(export, seed=1, artifact="band_aid").test.with_mode("attacked")
    for i in range(len(a)):
        assert torch.equal(a.load_raw(i), b.load_raw(i)) and torch.equal(a.get_mask(i, "band_aid"),
                                                                         b.get_mask(i, "band_aid"))
    pasted_into = np.flatnonzero(~a.carries)
    moved = [not torch.equal(a.get_mask(i, "band_aid"), other.get_mask(i, "band_aid")) for i in pasted_into]
    assert sum(moved) >= len(pasted_into) // 2
    assert torch.equal(pickle.loads(pickle.dumps(a)).load_raw(0), a.load_raw(0))  # DataLoader workers (spawn)


def test_masks_and_foreground_follow_the_paste(export):
    test = _load(export, artifact="band_aid").test
    clean, attacked = test.with_mode("clean"), test.with_mode("attacked")
    for c, i in enumerate(np.flatnonzero(~test.artifact_labels("band_aid"))):
        pasted = attacked.get_mask(i, "band_aid")
        assert pasted.dtype == torch.bool and pasted.shape == (32, 32)
        assert not clean.get_mask(c, "band_aid").any()
        assert torch.equal(attacked.get_foreground_mask(i), clean.get_foreground_mask(c) & ~pasted)
        ruler = clean.get_mask(c, "ruler")
        assert torch.equal(attacked.get_mask(i, "ruler"), ruler & ~pasted)  # covered where pasted over
        image, masks = attacked.render(i)
        assert image.shape == (32, 32, 3) and np.array_equal(masks["band_aid"], pasted.numpy())
    carrier = int(np.flatnonzero(test.artifact_labels("band_aid"))[0])
    assert torch.equal(test.get_mask(carrier, "band_aid"), test.base.get_mask(carrier, "band_aid"))  # ch: as it is


def test_sources_are_only_masked_training_images(tmp_path):
    """Val and test images with masks of their own are never pasted; nor is a listed image without a mask."""
    root = image_folder_tree(tmp_path / "a")  # ruler masks: img_00 rows 0-7, img_03 rows 24-31 (at 32 px)
    write_mask(root / "masks" / "ruler" / "img_04.png", box=(2, 2, 8, 8))  # val
    write_mask(root / "masks" / "ruler" / "img_05.png", box=(2, 2, 8, 8))  # test
    data = _load(root, artifact="ruler")
    sources = data.test.sources
    assert [data.train.sample_ids[i] for i in sources.indices] == ["img_00.png", "img_03.png"]
    for split in (data.val, data.test):
        attacked = split.with_mode("attacked")
        assert attacked.sample_ids == split.sample_ids
        for i in np.flatnonzero(~attacked.carries):
            rows, cols = _box(attacked.get_mask(i, "ruler"))
            assert (rows.stop - rows.start, cols.start, cols.stop) == (8, 0, 32)  # a training strip, never a square


def test_mask_provider_and_fallback_without_masks(tmp_path):
    root = image_folder_tree(tmp_path / "a")
    strip = torch.zeros(32, 32, dtype=torch.bool)
    strip[:, :6] = True
    provided = _load(root, artifact="ruler", mask_provider=lambda sid: strip if sid == "img_07.png" else None)
    train = provided.train
    assert [train.sample_ids[i] for i in provided.test.sources.indices] == ["img_00.png", "img_03.png", "img_07.png"]
    assert train.get_mask(train.sample_ids.index("img_07.png"), "ruler") is None  # ground truth stays as it is
    for mask_file in (root / "masks" / "ruler").iterdir():
        mask_file.unlink()
    (root / "artifacts.json").write_text(json.dumps({"ruler": ["img_00.png", "img_07.png"]}))
    with pytest.warns(UserWarning, match="artifact 'ruler': no training sample annotated with it has a mask"):
        bare = _load(root, artifact="ruler")
    assert bare.test.target is None and not isinstance(bare.test, PastedArtifactDataset)
    assert isinstance(_load(root, artifact="ruler", mask_provider=lambda sid: strip).test, PastedArtifactDataset)


def test_evaluate_subsets_on_pasted_subsets(tmp_path):
    from models import get_model
    from utils.metrics import evaluate_subsets

    root = image_folder_tree(tmp_path / "a")
    model = get_model("tiny_vgg", 2, img_size=32)
    result = evaluate_subsets(model, _load(root, artifact="ruler").test, batch_size=8)
    assert set(result) == {"clean", "attacked", "ch"}
    test = _load(root, artifact="ruler").test
    assert result["clean"]["n"] == int((~test.artifact_labels("ruler")).sum())
    assert result["attacked"]["n"] == result["ch"]["n"] == len(test)
    # every test image carries the artifact: no clean image (the empty subset is left out)
    (root / "artifacts.json").write_text(json.dumps({"ruler": ["img_00.png", "img_05.png", "img_11.png"]}))
    assert set(evaluate_subsets(model, _load(root, artifact="ruler").test, batch_size=8)) == {"attacked", "ch"}
