"""Preprocessing: store content, agreement with a direct forward hook, resume, errors."""
import h5py
import numpy as np
import pytest
import torch

from models import get_model
from utils.checkpoint import save_checkpoint
from utils.config import AuditConfig, load_config
from utils.errors import UserError
from utils.feature_store import FeatureStore, store_path
from utils.preprocessing import channel_axis, input_heatmap, layer_features, preprocess

DATA = {"dataset_name": "synth_derm", "img_size": 16,
        "dataset_options": {"n_train": 20, "n_val": 4, "n_test": 4}, "batch_size": 8, "splits": ["train"]}


@pytest.fixture
def audit_config(tmp_path, write_config):
    def make(model_name="tiny_vgg", name="audit", **values):
        torch.manual_seed(0)
        model = get_model(model_name, 2, img_size=DATA["img_size"])
        ckpt = tmp_path / f"{model_name}.pt"
        if not ckpt.exists():
            save_checkpoint(ckpt, model, model_name, 2)
        path = write_config(name, **{**DATA, "model_name": model_name, "ckpt_path": str(ckpt), **values})
        return load_config(path, AuditConfig)

    return make


def _contents(path):
    out = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, obj: out.__setitem__(name, obj[:]) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_store_content_matches_forward_hook(audit_config):
    config = audit_config(heatmap_size=8)
    [result] = preprocess(config, progress=False)
    assert result.n_samples == result.n_computed == 20
    with FeatureStore(result.path) as store:
        assert store.layer_names == ["features.2", "features.6", "features.10", "features.14"]
        assert store.array("heatmaps").shape == (20, 8, 8)
        assert store.array("outputs").shape == (20, 2)
        np.testing.assert_array_equal(store.array("targets"), store.array("labels"))
        assert store.sample_ids[:2] == ["train_00000", "train_00001"]
        cavs_max, cavs_mean = store.features("features.10", "cavs_max"), store.features("features.10", "cavs_mean")
        rels_max, rel = store.features("features.10", "rels_max"), store.features("features.10", "rel")
    assert cavs_max.shape == (20, 64) and (rels_max >= 0).all()
    assert np.all(np.abs(rel).sum(1) <= 1 + 1e-5)  # relevance share of each channel

    # the stored pooled activation is the layer's output seen by a plain forward hook
    from datasets import get_dataset_from_config
    from models import get_model_for_config

    split = get_dataset_from_config(config).train
    split.augment = False  # the store describes the data without training augmentation
    model = get_model_for_config(config, 2)
    seen = {}
    model.features[10].register_forward_hook(lambda m, i, o: seen.setdefault("a", o))
    with torch.no_grad():
        model(torch.stack([split[i][0] for i in range(8)]))
    np.testing.assert_allclose(cavs_max[:8], seen["a"].amax((2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cavs_mean[:8], seen["a"].mean((2, 3)).numpy(), rtol=1e-4, atol=1e-5)


def test_resume_after_interruption_gives_identical_file(audit_config):
    reference = audit_config(name="uninterrupted")
    preprocess(reference, progress=False)
    config = audit_config(name="interrupted")

    def stop_after_two(n_done):
        if n_done >= 16:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        preprocess(config, on_batch=stop_after_two, progress=False)
    with pytest.raises(UserError, match="incomplete"):
        FeatureStore(store_path(config, "train"))
    [result] = preprocess(config, progress=False)
    assert result.n_computed == 4  # only the last batch was left
    expected, got = _contents(store_path(reference, "train")), _contents(store_path(config, "train"))
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_array_equal(expected[name], got[name], err_msg=name)
    # a finished store is reused, not recomputed
    assert preprocess(config, progress=False)[0].n_computed == 0


def test_changed_settings_refuse_a_finished_store(audit_config):
    preprocess(audit_config(), progress=False)
    changed = audit_config(relevance_target="prediction")
    with pytest.raises(UserError, match="force_recompute"):
        preprocess(changed, progress=False)
    [result] = preprocess(changed, force=True, progress=False)
    assert result.n_computed == 20


def test_vit_tokens_are_pooled_over_tokens(audit_config):
    config = audit_config("tiny_vit", img_size=16)
    [result] = preprocess(config, progress=False)
    with FeatureStore(result.path) as store:
        assert store.features("encoder.layers.encoder_layer_1", "cavs_max").shape == (20, 32)
        assert store.array("heatmaps").shape == (20, 16, 16)


def test_layer_features_layouts():
    act = torch.rand(2, 3, 5)  # a 1-D signal layer (N, C, T)
    rel = torch.randn(2, 3, 5)
    feats = layer_features(act, rel, axis=1)
    torch.testing.assert_close(feats["cavs_max"], act.amax(-1))
    torch.testing.assert_close(feats["rels_mean"], rel.clamp(min=0).mean(-1))
    torch.testing.assert_close(feats["rels_max"], rel.clamp(min=0).amax(-1))
    torch.testing.assert_close(feats["cavs_mean"], act.mean(-1))
    torch.testing.assert_close(feats["rel"], rel.sum(-1) / rel.abs().sum((1, 2)).unsqueeze(1))
    tokens = layer_features(act.transpose(1, 2), rel.transpose(1, 2), axis=-1)  # (N, T, D) tokens
    for kind in feats:
        torch.testing.assert_close(tokens[kind], feats[kind])
    # downsampling keeps the total relevance of a signal and of an image
    signal = torch.randn(2, 3, 16)
    torch.testing.assert_close(input_heatmap(signal, 4).sum(-1), signal.sum((1, 2)))
    image = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(input_heatmap(image, 4).sum((1, 2)), image.sum((1, 2, 3)), rtol=1e-4, atol=1e-4)


def test_channel_axis_comes_from_the_model_spec():
    from models import get_model_spec

    assert channel_axis(get_model_spec("tiny_vit")) == -1
    assert channel_axis(get_model_spec("tiny_vgg")) == 1


def test_cli_reports_a_missing_checkpoint(write_config, capsys):
    from experiments.preprocessing.run_preprocessing import main

    path = write_config("nockpt", **DATA, ckpt_path="does/not/exist.pt")
    with pytest.raises(SystemExit) as exit_info:
        main(["--config_file", str(path)])
    assert exit_info.value.code == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_rank_shards_resume_and_merge_into_the_single_process_file(audit_config):
    """What each rank of a torchrun run does, in one process: shards of whole batches, an
    interrupted shard continued, the merge giving the single-process file."""
    from datasets import get_dataset_from_config
    from models import get_model_for_config
    from tests.conftest import assert_same_h5
    from utils.distributed import DistContext
    from utils.feature_store import merge_shards, remove_shards, shard_paths
    from utils.preprocessing import Preprocessor, shard_range

    reference = audit_config(name="single")
    preprocess(reference, progress=False)
    config = audit_config(name="sharded")
    dataset = get_dataset_from_config(config).train
    runner = Preprocessor(config, get_model_for_config(config, 2), progress=False)
    plan = runner.plan(dataset, "train")
    ranks = [DistContext(rank, 2) for rank in range(2)]
    # 20 rows in batches of 8: rank 0 takes the first two batches, rank 1 the short last one
    assert [shard_range(20, 8, rank) for rank in ranks] == [(0, 16), (16, 20)]

    def stop_after_one(position):
        if position >= 8:
            raise KeyboardInterrupt

    assert runner.open_shard(plan, ranks[0]) == 0
    runner.on_batch = stop_after_one
    with pytest.raises(KeyboardInterrupt):
        runner.fill_shard(dataset, plan, ranks[0])
    runner.on_batch = None
    assert runner.open_shard(plan, ranks[0]) == 8  # continues at its second batch
    for rank in ranks:
        runner.open_shard(plan, rank)
        runner.fill_shard(dataset, plan, rank)
    finished = [shard_paths(plan.path, rank.rank, 2)[1] for rank in ranks]
    assert runner.open_shard(plan, ranks[1]) == 4  # a finished shard is kept, not recomputed
    merge_shards(plan.path, finished, plan.n_samples, plan.meta, config.batch_size)
    remove_shards(plan.path)
    assert_same_h5(store_path(reference, "train"), plan.path)
    assert not list(plan.path.parent.glob(".*.h5"))
    assert preprocess(config, progress=False)[0].n_computed == 0  # the merged store counts as finished
