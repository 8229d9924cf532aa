"""State that outlives one call has an explicit owner: a later caller never gets what an earlier one left."""
from types import SimpleNamespace

import yaml

from utils import distributed
from utils.evaluation import steps
from utils.paths import local_config


def test_local_config_follows_the_environment_and_edits(tmp_path, monkeypatch):
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text(yaml.safe_dump({"output_dir": "a"}))
    second.write_text(yaml.safe_dump({"output_dir": "b"}))
    monkeypatch.setenv("SHORTCUTLAB_LOCAL_CONFIG", str(first))
    assert local_config()["output_dir"] == "a"
    monkeypatch.setenv("SHORTCUTLAB_LOCAL_CONFIG", str(second))
    assert local_config()["output_dir"] == "b"
    second.write_text(yaml.safe_dump({"output_dir": "edited", "data_paths": {}}))
    assert local_config()["output_dir"] == "edited"
    monkeypatch.setenv("SHORTCUTLAB_LOCAL_CONFIG", str(tmp_path / "missing.yaml"))
    assert local_config() == {}


def test_distributed_context_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.get_context() == distributed.DistContext()
    assert not hasattr(distributed, "_CONTEXT")  # nothing cached: torch.distributed owns the process group


def _config(seed, **overrides):
    values = {"dataset_name": "synth_derm", "img_size": 16, "dataset_options": {}, "artifacts": None,
              "artifact_type": None, "attacked_classes": None, "p_artifact": None, "artifact": "band_aid",
              "seed": seed, "data_paths": None, "source_masks": "gt", "localization_dir": None}
    return SimpleNamespace(**{**values, **overrides})


def test_split_cache_loads_each_data_set_once_for_its_owner(monkeypatch):
    loaded = []
    monkeypatch.setattr(steps, "correction_splits", lambda config: loaded.append(config.seed) or object())
    cache = steps.SplitCache()
    first = cache.splits(_config(0))
    assert cache.splits(_config(0)) is first  # two corrections of one model: one data set
    second = cache.splits(_config(1))
    assert second is not first and loaded == [0, 1]
    assert cache.splits(_config(0)) is not first  # one data set at a time: back to seed 0 loads again
    assert steps.SplitCache().splits(_config(0)) is not steps.SplitCache().splits(_config(0))  # no sharing
    assert loaded == [0, 1, 0, 0, 0]
