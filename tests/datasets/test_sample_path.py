"""The per-sample path of training (load, flip, normalise; masks for corrections) gives exactly what the
explicit formulas give, and draws the global torch RNG exactly as they do: every result of a seeded run
depends on both."""
import numpy as np
import pytest
import torch

from datasets import get_dataset
from model_training.corrections.data import MaskedTrainingSet

SMALL = {"n_train": 24, "n_val": 4, "n_test": 4}


def _train(name="synth_derm"):
    return get_dataset(name, img_size=32, seed=2, dataset_options=SMALL).train


def _per_channel(stat, x, sample_dims=3):
    """The statistic as the formula reads it: in x's dtype, broadcast over a sample or a batch."""
    leading = x.dim() - sample_dims
    return stat.to(x).view(*([1] * leading), -1, *([1] * (sample_dims - 1)))


def _flips(tensors):
    """The augmentation as stated: a draw per axis (the last first); a flip when it falls below 1/2."""
    for dim in (-1, -2):
        if torch.rand(()) < 0.5:
            tensors = [t.flip(dim) for t in tensors]
    return tensors


def _raw(split, idx):
    """A sample from the inserters' layout (H, W, 3), not through load_raw."""
    return torch.from_numpy(split.render(idx)[0].copy()).permute(2, 0, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalize_and_denormalize_are_the_formula_bit_for_bit(dtype):
    split = _train()
    sample = split.load_raw(3).to(dtype)  # as load_raw gives it: a channels-last view for the generated images
    batch = torch.stack([split.load_raw(i) for i in range(4)]).to(dtype)
    for x in (sample, sample.contiguous(), batch, batch.to(memory_format=torch.channels_last)):
        mean, std = _per_channel(split.mean, x), _per_channel(split.std, x)
        normalized = split.normalize(x)
        assert normalized.dtype == dtype and normalized.shape == x.shape
        assert torch.equal(normalized, (x - mean) / std)
        assert torch.equal(split.denormalize(normalized), normalized * std + mean)
    before = sample.clone()
    split.normalize(sample).fill_(0)  # a new tensor, even where the input needs no copy
    split.normalize(sample.contiguous()).fill_(0)
    assert torch.equal(sample, before)


def test_new_statistics_replace_the_shaped_ones():
    split = _train()
    x = split.load_raw(0)
    split.normalize(x)
    split.mean, split.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    assert split.mean.dtype == torch.float32
    assert torch.equal(split.normalize(x), (x - 0.5) / 0.25)


def test_signals_are_normalized_per_lead_and_never_flipped():
    split = _train("synth_ecg")
    assert split.augment and split.modality == "signal"
    x = split.load_raw(1)
    for value in (x, torch.stack([x, split.load_raw(2)])):
        mean, std = _per_channel(split.mean, value, 2), _per_channel(split.std, value, 2)
        assert torch.equal(split.normalize(value), (value - mean) / std)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    out = split.random_flips([x, None])
    assert out[0] is x and out[1] is None
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn


def test_random_flips_draw_and_flip_as_stated():
    split = _train()
    x, mask = split.load_raw(0), split.get_foreground_mask(0)
    torch.manual_seed(1)
    expected = [_flips([x, mask]) for _ in range(16)]  # all four outcomes occur among 16 pairs of draws
    state = torch.get_rng_state()
    torch.manual_seed(1)
    got = [split.random_flips([x, mask]) for _ in range(16)]
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(g, e) for gs, es in zip(got, expected) for g, e in zip(gs, es))
    candidates = [x, x.flip(-1), x.flip(-2), x.flip(-1).flip(-2)]
    assert {next(k for k, c in enumerate(candidates) if torch.equal(g[0], c)) for g in got} == {0, 1, 2, 3}


@pytest.mark.parametrize("mode", ["ch", "clean", "attacked", "confounding"])
def test_artifact_samples_load_as_rendered(mode):
    split = _train().with_mode(mode)
    for idx in range(len(split)):
        assert split._present(idx) == tuple(a for a in split.spec if split.artifact_labels(a)[idx])
        assert torch.equal(split.load_raw(idx), _raw(split, idx))


def test_masked_training_set_is_the_stated_computation():
    """A seeded loader pass with augmentation: the same batches as the explicit per-sample computation,
    and the global RNG left in the same state."""
    split = _train()
    masked = MaskedTrainingSet(split, "band_aid")
    assert masked.augment and masked.has_mask.any() and not masked.has_mask.all()
    torch.manual_seed(0)
    expected = []
    for idx in range(len(split)):
        x = _raw(split, idx)
        has = bool(split.artifact_labels("band_aid")[idx])
        artifact = split.get_mask(idx, "band_aid") if has else torch.zeros(x.shape[1:], dtype=torch.bool)
        foreground = split.get_foreground_mask(idx)
        x, artifact, foreground = _flips([x, artifact[None].float(), foreground[None].float()])
        x = (x - split.mean.view(-1, 1, 1)) / split.std.view(-1, 1, 1)
        expected.append((x, int(split.labels[idx]), artifact, foreground, has))
    expected = torch.utils.data.default_collate(expected)
    state = torch.get_rng_state()

    for _ in range(2):  # the second pass from the mask cache
        torch.manual_seed(0)
        # what a DataLoader does in the main process (its iterator draws a seed of its own besides)
        got = torch.utils.data.default_collate([masked[idx] for idx in range(len(masked))])
        assert torch.equal(torch.get_rng_state(), state)
        for g, e in zip(got, expected):
            assert g.dtype == e.dtype and torch.equal(g, e)


def test_callers_cannot_change_the_cached_masks():
    split = _train()
    masked = MaskedTrainingSet(split, "band_aid")
    masked.augment = False  # nothing flipped: what the cache holds is closest to what a caller gets
    idx = int(np.flatnonzero(masked.has_mask)[0])
    for _ in range(2):
        x, _, artifact, foreground, _ = masked[idx]
        assert torch.equal(artifact[0].bool(), split.get_mask(idx, "band_aid")) and artifact.any()
        assert torch.equal(foreground[0].bool(), split.get_foreground_mask(idx))
        x.fill_(0), artifact.fill_(0), foreground.fill_(0)  # a caller writing into what it got
    assert torch.equal(masked[idx][0], split.normalize(_raw(split, idx)))


def test_which_samples_carry_an_artifact_is_drawn_once_per_split_and_the_same():
    """The per-sample draws are kept for the process (read-only) and are exactly the per-sample generators'."""
    from datasets.with_artifacts import _code, _uniform_draws

    draws = _uniform_draws(3, _code("train"), _code("band_aid"), 20)
    expected = [np.random.default_rng([3, _code("train"), i, _code("band_aid")]).random() for i in range(20)]
    assert draws.tolist() == expected and _uniform_draws(3, _code("train"), _code("band_aid"), 20) is draws
    with pytest.raises(ValueError):
        draws[0] = 0.5
