import numpy as np
import pytest
import torch

from datasets import get_dataset, list_datasets
from datasets.artifacts import insert_artifact, list_artifacts
from tests.conftest import ROOT
from utils.errors import UserError

SMALL = {"n_train": 60, "n_val": 20, "n_test": 20}


def _data(**kwargs):
    return get_dataset(kwargs.pop("name", "synth_derm"), img_size=32, dataset_options=SMALL, **kwargs)


def test_generation_is_deterministic_and_seed_dependent():
    a, b, c = _data(seed=3).train, _data(seed=3).train, _data(seed=4).train
    assert torch.equal(a.load_raw(5), b.load_raw(5))
    assert np.array_equal(a.labels, b.labels)
    assert not torch.equal(a.load_raw(5), c.load_raw(5))


def test_a_reopened_data_set_reuses_the_drawn_samples():
    from datasets.synth_derm import _drawn_lesion, render_lesion

    first = _data(seed=11).train.base  # the lesion images, before artifacts are inserted
    image = first.load_raw(7)
    draws = _drawn_lesion(32).cache_info().misses
    again = _data(seed=11).train.base  # what every step of a pipeline does
    assert torch.equal(again.load_raw(7), image)
    assert _drawn_lesion(32).cache_info().misses == draws  # not drawn a second time
    expected, _ = render_lesion(np.random.default_rng([11, first._split_code, 7, 1]), 32, bool(first.labels[7]))
    assert np.array_equal(image.permute(1, 2, 0).numpy(), expected)


def test_render_cache_budget_comes_from_the_environment(monkeypatch):
    """2 GiB by default (25,000 64-px samples fit); $SHORTCUTLAB_RENDER_CACHE_MIB sets it, 0 turns it off,
    anything else is a one-line error naming the variable."""
    from datasets.base import ENV_RENDER_CACHE, render_cache_bytes, shared_render_cache
    from utils.errors import UserError

    monkeypatch.delenv(ENV_RENDER_CACHE, raising=False)
    per_sample = 13 * 64 * 64
    assert render_cache_bytes() == 2048 * 2**20 and render_cache_bytes() // per_sample >= 25000
    monkeypatch.setenv(ENV_RENDER_CACHE, "1")
    assert shared_render_cache(abs, per_sample).cache_info().maxsize == 64  # a floor of 64 samples
    monkeypatch.setenv(ENV_RENDER_CACHE, "0")
    uncached = shared_render_cache(abs, per_sample)
    uncached(-1), uncached(-1)
    assert uncached.cache_info().currsize == 0 and uncached.cache_info().misses == 2
    monkeypatch.setenv(ENV_RENDER_CACHE, "lots")
    with pytest.raises(UserError, match=ENV_RENDER_CACHE):
        render_cache_bytes()
    import subprocess
    import sys

    # read when a cache is first used, never at import: an entry point can still turn it into one line
    done = subprocess.run([sys.executable, "-c", "import datasets"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1000:]


def test_splits_differ_and_have_both_classes():
    data = _data()
    assert not torch.equal(data.train.load_raw(0), data.test.load_raw(0))
    for _, split in data.items():
        assert set(split.labels) == {0, 1}
        assert split.get_foreground_mask(0).dtype == torch.bool


def test_image_size_224_works():
    split = get_dataset("synth_derm", img_size=224, dataset_options=SMALL).val
    x, y = split[0]
    assert x.shape == (3, 224, 224) and y in (0, 1)


@pytest.mark.parametrize("artifact", list_artifacts("image"))
def test_mask_is_exactly_the_changed_pixels(artifact):
    image = np.random.default_rng(0).uniform(0.05, 0.95, (48, 48, 3)).astype(np.float32)
    out, mask = insert_artifact(image, artifact, np.random.default_rng(1))
    changed = (out != image).any(-1)
    assert mask.dtype == bool and mask.any()
    assert np.array_equal(mask, changed)


def test_default_shortcut_rates():
    train = get_dataset("synth_derm", img_size=32).train  # full size: rates are measurable
    band_aid = train.artifact_labels("band_aid")
    assert band_aid[train.labels == 1].sum() == 0
    assert 0.28 < band_aid[train.labels == 0].mean() < 0.38
    ruler = train.artifact_labels("ruler")
    assert abs(ruler[train.labels == 0].mean() - ruler[train.labels == 1].mean()) < 0.05


def test_rendered_masks_match_annotations():
    split = _data().train
    labels = split.artifact_labels("band_aid")
    with_artifact, without = np.flatnonzero(labels)[0], np.flatnonzero(~labels)[0]
    assert split.get_mask(with_artifact, "band_aid").any()
    assert not split.get_mask(without, "band_aid").any()
    clean = split.with_mode("clean")
    changed = (split.load_raw(with_artifact) != clean.load_raw(with_artifact)).any(0)
    assert torch.equal(changed, split.get_mask(with_artifact, "band_aid"))


def test_evaluation_subsets_contain_or_lack_the_artifact():
    test = _data(artifact="band_aid").test
    attacked, clean = test.with_mode("attacked"), test.with_mode("clean")
    assert attacked.artifact_labels("band_aid").all()
    assert not clean.artifact_labels("band_aid").any() and not clean.artifact_labels("ruler").any()
    for idx in range(3):
        assert attacked.get_mask(idx, "band_aid").any()
        assert not clean.get_mask(idx, "band_aid").any()
        assert torch.equal(clean.load_raw(idx), clean.base.load_raw(idx))


def test_attacked_wrapper_uses_published_defaults_and_overrides():
    assert "synth_derm_attacked" in list_datasets()
    data = _data(name="synth_derm_attacked", artifact_type="microscope", attacked_classes=["melanoma"], p_artifact=1.0)
    train = data.train
    assert train.artifact_names == ["microscope"]
    assert np.array_equal(train.artifact_labels("microscope"), train.labels == 1)
    assert _data(name="synth_derm_attacked").train.target == "band_aid"


@pytest.mark.parametrize("kwargs,message", [
    ({"name": "nope"}, "unknown dataset 'nope'"),
    ({"artifacts": {"band_aid": {"cat": 0.5}}}, "unknown class 'cat'"),
    ({"artifacts": {"laser": {"benign": 0.5}}}, "unknown artifact 'laser'"),
    ({"artifact": "ruler_x"}, "'artifact': 'ruler_x' is not inserted"),
])
def test_bad_dataset_arguments(kwargs, message):
    with pytest.raises(UserError, match=message):
        _data(**kwargs)


def test_unknown_dataset_option():
    with pytest.raises(UserError, match="has no option 'n_trian'"):
        get_dataset("synth_derm", dataset_options={"n_trian": 3})


def test_flips_move_input_and_masks_together():
    split = _data().train
    torch.manual_seed(0)
    x = torch.arange(16.0).view(1, 4, 4)
    flipped = [split.random_flips([x, x.clone()]) for _ in range(8)]
    assert all(torch.equal(a, b) for a, b in flipped)
    assert any(not torch.equal(a, x) for a, _ in flipped)


def test_shipped_seed_annotations_show_the_band_aid():
    """data/synth_derm_band_aid_seeds.json must name band-aid images of the default embedded data."""
    import json

    from conftest import ROOT

    seeds = json.loads((ROOT / "data" / "synth_derm_band_aid_seeds.json").read_text())["band_aid"]
    train = get_dataset("synth_derm", img_size=64, seed=0, artifact="band_aid").train
    has = train.artifact_labels("band_aid")
    assert len(seeds) == 5 and all(has[train.sample_ids.index(s)] for s in seeds)


def test_multi_label_variant_adds_the_lesion_size_label_of_the_same_images():
    options = {"n_train": 40, "n_val": 8, "n_test": 8}
    single = get_dataset("synth_derm", img_size=32, dataset_options=options).train
    multi = get_dataset("synth_derm", img_size=32, dataset_options={**options, "multi_label": True}).train
    assert multi.multi_label and multi.class_names == ["benign", "melanoma", "large"]
    assert np.array_equal(multi.labels[:, :2].argmax(1), single.labels)
    assert torch.equal(multi.load_raw(3), single.load_raw(3))  # the same images, band-aids included
    area = np.array([multi.get_foreground_mask(i).float().mean().item() for i in range(len(multi))])
    large = multi.labels[:, 2].astype(bool)
    assert 0 < large.sum() < len(large) and area[large].min() > area[~large].max()
    # the band-aid still follows the diagnosis (benign), whatever the size label says
    has = multi.artifact_labels("band_aid")
    assert has.any() and not has[multi.labels[:, 1] > 0].any()


@pytest.mark.parametrize("name", ["synth_derm", "synth_ecg"])
def test_multi_label_option_takes_true_or_false_only(name):
    with pytest.raises(UserError, match=r"^dataset_options.multi_label: true or false, got 'no'$"):
        get_dataset(name, img_size=32, dataset_options={"n_train": 4, "n_val": 2, "n_test": 2, "multi_label": "no"})


@pytest.mark.parametrize("name", ["synth_derm", "synth_shapes", "synth_ecg"])
def test_inserted_artifacts_are_kept_and_identical_to_drawing_them_again(name, monkeypatch):
    """A reopened split (every pipeline step, every correction) reuses the samples with their artifacts,
    and gets exactly what inserting them again gives; with the render cache off nothing is kept."""
    from datasets import with_artifacts
    from datasets.base import ENV_RENDER_CACHE, RenderMemo

    memo = RenderMemo(with_artifacts._RENDERED.nbytes)
    monkeypatch.setattr(with_artifacts, "_RENDERED", memo)
    split = _data(name=name, seed=5).train.with_mode("attacked")  # every sample carries the target
    first = [split.render(i) for i in range(6)]
    assert len(memo.items) == 6
    drawn = memo.items.copy()
    again = _data(name=name, seed=5).train.with_mode("attacked")
    for i, (image, masks) in enumerate(first):
        fresh_image, fresh_masks = again._insert(i, tuple(again._present(i)))  # drawn anew, not kept
        assert np.array_equal(image, fresh_image) and masks.keys() == fresh_masks.keys()
        assert all(np.array_equal(masks[a], fresh_masks[a]) for a in masks)
        assert torch.equal(again.load_raw(i), split.load_raw(i))
    assert memo.items.keys() == drawn.keys()  # the reopened split drew nothing
    other_seed = _data(name=name, seed=6).train.with_mode("attacked")
    assert not torch.equal(other_seed.load_raw(0), split.load_raw(0))  # the key tells the data sets apart
    mask = split.get_mask(0, split.target)
    mask.fill_(False)  # a caller changing its mask does not change the kept one
    assert split.get_mask(0, split.target).any()

    monkeypatch.setenv(ENV_RENDER_CACHE, "0")
    off = RenderMemo(with_artifacts._RENDERED.nbytes)
    monkeypatch.setattr(with_artifacts, "_RENDERED", off)
    assert torch.equal(split.load_raw(1), again.load_raw(1)) and not off.items


def test_render_memo_keeps_the_most_recent_within_its_budget(monkeypatch):
    from datasets.base import ENV_RENDER_CACHE, RenderMemo

    monkeypatch.setenv(ENV_RENDER_CACHE, "1")  # 1 MiB: four samples of 250 KiB
    memo, draws = RenderMemo(lambda value: value.nbytes), []

    def draw(i):
        draws.append(i)
        return np.full(250 * 1024, i, dtype=np.uint8)

    for i in (0, 1, 2, 3, 0, 4):  # 0 is used again before 4 comes: 1 is the least recent
        memo.get(i, lambda i=i: draw(i))
    assert draws == [0, 1, 2, 3, 4] and list(memo.items) == [2, 3, 0, 4]
    assert memo.held == 4 * 250 * 1024 <= 2**20
    memo.get(1, lambda: draw(1))
    assert draws[-1] == 1 and 2 not in memo.items
