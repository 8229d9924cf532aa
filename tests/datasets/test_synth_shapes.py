"""Embedded synthetic shapes: determinism, classes, object masks, the star shortcut, export."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from datasets import get_dataset, list_datasets
from datasets.synth_shapes import CLASS_NAMES, FAMILIES, SHORTCUT_CLASS, SHORTCUT_RATE, render_shape

SMALL = {"n_train": 60, "n_val": 12, "n_test": 12}


def _data(name="synth_shapes", img_size=32, options=SMALL, **kwargs):
    return get_dataset(name, img_size=img_size, dataset_options=options, **kwargs)


def test_generation_is_deterministic_and_seed_dependent():
    a, b, c = _data(seed=3).train, _data(seed=3).train, _data(seed=4).train
    assert torch.equal(a.load_raw(5), b.load_raw(5)) and np.array_equal(a.labels, b.labels)
    assert torch.equal(a.get_foreground_mask(5), b.get_foreground_mask(5))
    assert not torch.equal(a.load_raw(5), c.load_raw(5))
    # the same sample as the renderer draws it from (seed, split, index)
    base = a.base
    expected, mask = render_shape(np.random.default_rng([3, base._split_code, 5, 1]), 32, int(base.labels[5]))
    assert np.array_equal(base.load_raw(5).permute(1, 2, 0).numpy(), expected)
    assert np.array_equal(base.get_foreground_mask(5).numpy(), mask)


def test_labels_do_not_depend_on_the_image_size_and_splits_differ():
    small, large = _data(img_size=32), _data(img_size=48)
    assert np.array_equal(small.train.labels, large.train.labels)
    assert not torch.equal(small.train.load_raw(0), small.test.load_raw(0))


def test_classes_shapes_and_value_range():
    data = _data()
    assert data.class_names == list(CLASS_NAMES) and data.n_classes == 6 >= 5
    assert set(data.train.labels) == set(range(6))  # every class is drawn
    x = data.train.base.load_raw(0)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    inputs, label = data.train[0]
    assert inputs.shape == (3, 32, 32) and label in range(6)


@pytest.mark.parametrize("label", range(len(CLASS_NAMES)))
def test_every_class_is_drawable_with_a_plausible_object(label):
    for i in range(3):
        image, mask = render_shape(np.random.default_rng([label, i]), 64, label)
        assert image.shape == (64, 64, 3) and mask.shape == (64, 64) and mask.dtype == bool
        assert 0.03 < mask.mean() < 0.6  # an object, neither a speck nor the whole image


def test_eight_classes_add_two_families_and_keep_the_first_six():
    """``n_classes: 8`` (as many classes as ISIC 2019): bar and crescent are drawn, the star keeps its
    timestamp, and the default six-class task is unchanged."""
    eight = _data(options={**SMALL, "n_train": 160, "n_classes": 8})
    assert eight.class_names == list(FAMILIES) and FAMILIES[:6] == CLASS_NAMES
    assert set(eight.train.labels) == set(range(8))
    for label in (6, 7):
        for i in range(3):
            _, mask = render_shape(np.random.default_rng([label, i]), 64, label)
            assert 0.03 < mask.mean() < 0.6
    stars = eight.train.labels == CLASS_NAMES.index(SHORTCUT_CLASS)
    flags = np.asarray(eight.train.artifact_labels("timestamp"), dtype=bool)
    assert flags[stars].any() and not flags[~stars].any()
    assert _data().n_classes == 6
    with pytest.raises(Exception, match="n_classes: an integer from 4 to 8"):
        _data(options={**SMALL, "n_classes": 9})


def test_rings_have_a_hole_and_the_other_shapes_are_solid():
    def holes(label):
        masks = [render_shape(np.random.default_rng([99, label, i]), 64, label)[1] for i in range(12)]
        return np.mean([(ndimage.binary_fill_holes(m) & ~m).sum() >= 3 for m in masks])

    ring = CLASS_NAMES.index("ring")
    assert holes(ring) >= 0.9
    assert all(holes(label) <= 0.2 for label in range(len(CLASS_NAMES)) if label != ring)


def test_object_masks_follow_the_drawn_edges():
    """The outline of each mask lies on the image's edges: moved a few pixels, it lies on far weaker ones."""
    split = _data(img_size=64, options={"n_train": 40, "n_val": 1, "n_test": 1}).train.base
    ratios = []
    for idx in range(len(split)):
        image, mask = split.load_raw(idx).numpy(), split.get_foreground_mask(idx).numpy()
        gradient = np.hypot(*np.gradient(image, axis=(1, 2))).sum(0)
        outline = mask & ~ndimage.binary_erosion(mask)
        ratios.append(gradient[outline].mean() / gradient[np.roll(outline, (5, 5), axis=(0, 1))].mean())
    ratios = np.array(ratios)
    # not every image: the object's colours are drawn independently of the background's
    assert np.median(ratios) > 1.3 and (ratios > 1).mean() > 0.85


def test_shortcut_only_in_its_class_at_its_rate():
    options = {"n_train": 600, "n_val": 1, "n_test": 1}  # which samples carry it is drawn without rendering
    train = _data(options=options).train
    has = train.artifact_labels("timestamp")
    star = train.labels == CLASS_NAMES.index(SHORTCUT_CLASS)
    assert train.artifact_names == ["timestamp"] and star.sum() > 60
    assert not has[~star].any()
    assert abs(has[star].mean() - SHORTCUT_RATE) < 0.12


def test_foreground_mask_excludes_the_stamped_pixels():
    train = _data().train
    idx = np.flatnonzero(train.artifact_labels("timestamp"))[0]
    stamp, foreground = train.get_mask(idx, "timestamp"), train.get_foreground_mask(idx)
    assert stamp.any() and not (stamp & foreground).any()
    changed = (train.load_raw(idx) != train.with_mode("clean").load_raw(idx)).any(0)
    assert torch.equal(changed, stamp)


def test_attacked_variant_and_evaluation_subsets():
    assert {"synth_shapes", "synth_shapes_attacked"} <= set(list_datasets())
    attacked_data = _data(name="synth_shapes_attacked").train
    star = attacked_data.labels == CLASS_NAMES.index(SHORTCUT_CLASS)
    assert attacked_data.target == "timestamp" and not attacked_data.artifact_labels("timestamp")[~star].any()
    test = _data(artifact="timestamp").test
    attacked, clean = test.with_mode("attacked"), test.with_mode("clean")
    assert attacked.artifact_labels("timestamp").all() and not clean.artifact_labels("timestamp").any()
    for idx in range(3):
        assert attacked.get_mask(idx, "timestamp").any()
        assert torch.equal(clean.load_raw(idx), clean.base.load_raw(idx))


def test_export_loads_back_as_an_image_folder(tmp_path, write_config):
    from datasets.export_image_folder import main as export_main

    options = {"n_train": 12, "n_val": 6, "n_test": 6}
    source = _data(options=options)
    config = write_config(dataset_name="synth_shapes", img_size=32, dataset_options=options)
    summary = export_main(["--config_file", str(config), "--out", str(tmp_path / "export")])
    assert summary["samples"] == {"train": 12, "val": 6, "test": 6}
    exported = get_dataset("image_folder", img_size=32, data_paths=[str(tmp_path / "export")],
                           dataset_options={"classes": list(CLASS_NAMES)})
    assert exported.class_names == list(CLASS_NAMES)
    for name, split in source.items():
        copy = exported.get(name)
        assert copy.labels.tolist() == split.labels.tolist()
        assert copy.artifact_labels("timestamp").tolist() == split.artifact_labels("timestamp").tolist()
        for i in range(len(split)):
            assert (copy.load_raw(i) - split.load_raw(i)).abs().max() <= 0.5 / 255 + 1e-6
            assert torch.equal(copy.get_foreground_mask(i), split.get_foreground_mask(i))


def test_committed_training_configs_are_valid():
    from tests.conftest import ROOT
    from utils.config import TrainingConfig, load_config

    paths = sorted((ROOT / "config_files" / "training" / "synth_shapes").glob("*.yaml"))
    assert any(p.name == "tiny_vgg_adam_lr0.003.yaml" for p in paths)
    for path in paths:
        config = load_config(path, TrainingConfig)
        assert config.dataset_name == "synth_shapes" and not config.data_paths, path


def test_one_epoch_training_smoke_run(write_config, tmp_path):
    from model_training.start_training import main

    config = write_config("smoke", dataset_name="synth_shapes", model_name="tiny_vgg", img_size=32, batch_size=16,
                          num_epochs=1, dataset_options={"n_train": 24, "n_val": 6, "n_test": 6})
    metrics = main(["--config_file", str(config)])
    assert set(metrics["test"]) == {"clean", "attacked", "ch"}  # the timestamp gives the evaluation subsets
    assert (tmp_path / "outputs" / "training" / "synth_shapes" / "tiny_vgg" / "smoke" / "checkpoints" / "best.pt").is_file()
