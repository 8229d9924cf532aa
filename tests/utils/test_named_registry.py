"""The one registry class: entries by name, a second entry under one name refused, an unknown name
answered in one line with the closest valid one."""
import pytest

from utils.errors import UserError
from utils.registry import Registry


def test_register_get_and_list():
    registry = Registry("clustering")

    @registry.register("kmeans")
    def kmeans():
        return "k"

    registry.register("dbscan", len)
    assert registry.get("kmeans") is kmeans and registry["dbscan"] is len and kmeans() == "k"
    assert registry.names() == ["dbscan", "kmeans"] and list(registry) == ["kmeans", "dbscan"]  # sorted; in order
    assert "kmeans" in registry and "nope" not in registry and len(registry) == 2
    assert registry.find("nope") is None


def test_a_second_entry_under_one_name_is_refused():
    registry = Registry("model")
    registry.register("tiny", object())
    with pytest.raises(ValueError, match="model 'tiny' registered twice"):
        registry.register("tiny", object())


def test_an_unknown_name_is_one_line_with_the_closest_valid_one():
    registry = Registry("correction method")
    for name in ("RRR", "RRClarc", "PClarc"):
        registry.register(name, name)
    with pytest.raises(UserError) as error:
        registry.get("RRClark")
    assert str(error.value) == ("unknown correction method 'RRClark' (did you mean 'RRClarc'?); "
                                "valid names: PClarc, RRClarc, RRR")
    assert registry.unknown("zzz", key="method") == "unknown method 'zzz'; valid names: PClarc, RRClarc, RRR"


def test_the_project_registries_use_it():
    from datasets.artifacts import ARTIFACTS
    from datasets.registry import DATASETS
    from model_training.corrections.base import CORRECTIONS
    from models.registry import MODELS
    from utils.bias.cav import CAV_METHODS
    from utils.lrp.attribution import BACKENDS
    from utils.pipeline import steps  # noqa: F401  (registers the steps)
    from utils.pipeline.runner import STEPS

    from model_training.corrections.isnet import HEATMAPS, VARIANTS
    from model_training.corrections.rrclarc import CRITERIA
    from model_training.corrections.rrr import EXPLANATIONS, PENALTIES
    from model_training.losses import LOSSES
    from model_training.trainer import OPTIMIZERS
    from utils.evaluation.runner import STEPS as EVALUATION_STEPS
    from utils.layout import POOLINGS
    from utils.preprocessing import TARGET_RULES
    from utils.reveal.spray import SPACES

    for registry in (ARTIFACTS, DATASETS, CORRECTIONS, MODELS, CAV_METHODS, BACKENDS, STEPS, CRITERIA, EXPLANATIONS,
                     PENALTIES, LOSSES, OPTIMIZERS, EVALUATION_STEPS, POOLINGS, TARGET_RULES, SPACES, HEATMAPS,
                     VARIANTS):
        assert isinstance(registry, Registry) and len(registry) > 0


def test_a_fixed_table_is_given_at_once_and_still_refuses_duplicates():
    registry = Registry("rrr_penalty", {"squared": abs, "share": len})
    assert registry.names() == ["share", "squared"] and registry["share"] is len
    with pytest.raises(UserError, match="unknown rrr_penalty 'shar' \\(did you mean 'share'\\?\\)"):
        registry.get("shar")
