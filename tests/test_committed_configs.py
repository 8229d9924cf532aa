"""Every committed YAML config under ``config_files/`` can be run as it stands.

Each file is loaded through the schema of its step (unknown keys and wrong values refused; a
pipeline config also through the schema of each of its sections), its layers are inspectable
layers of its model, its model builds (no weights are downloaded; the large models are built, not
run), its data set builds, the real ones on the tiny official layouts of
``tests/datasets/fixture_trees.py``, and the checkpoint it reads is written by a committed training
config that describes the same data and model. Each distinct model and data set is built once.
"""
import json
from pathlib import Path

import pytest
import torch
import yaml

from config_files.bias_mitigation_controlled.attacked import mitigation_configs
from config_files.published_settings import MODELS
from config_files.revealing.attacked import reveal_configs
from datasets import get_dataset_entry, get_dataset_from_config
from models import get_model, get_model_spec, layer_for_config
from tests.conftest import ROOT
from tests.datasets.fixture_trees import chexpert_tree, hyper_kvasir_tree, image_folder_tree, isic_tree, ptbxl_tree
from utils.config import AuditConfig, TrainingConfig, load_config
from utils.config.mitigation import MitigationConfig
from utils.pipeline.config import PipelineConfig

CONFIG_FILES = ROOT / "config_files"
# first folder under config_files/ -> the schema of its configs
SCHEMAS = {"training": TrainingConfig, "revealing": AuditConfig, "bias_mitigation_controlled": MitigationConfig,
           "pipeline": PipelineConfig}
NOT_STEP_CONFIGS = {"local_config.example.yaml"}  # machine settings (data roots), read by utils.paths
LAYER_KEYS = ("layer_name", "neuron_layer_name")
# keys that say which data and model a config means; an audit or a correction must agree with the
# training config of the checkpoint it reads
DATA_KEYS = ("dataset_name", "img_size", "seed", "model_name", "dataset_options", "artifacts", "artifact_type",
             "attacked_classes", "p_artifact")


def _image_folder_tree(root):
    # the image_folder pipeline is set up for an export of synth_derm, whose artifact is band_aid
    root = image_folder_tree(root)
    (root / "masks" / "ruler").rename(root / "masks" / "band_aid")
    annotated = json.loads((root / "artifacts.json").read_text())
    (root / "artifacts.json").write_text(json.dumps({"band_aid": annotated["ruler"]}))
    return root


# data set (without _attacked) -> writer of its official layout; the others are embedded
FIXTURES = {"isic": lambda p: isic_tree(p, n_per_class=5),
            "chexpert": lambda p: chexpert_tree(p / "CheXpert-v1.0-small", n_train_patients=6, n_valid_patients=0),
            "hyper_kvasir": hyper_kvasir_tree,
            "ptbxl": ptbxl_tree,
            "image_folder": _image_folder_tree}

COMMITTED = sorted(p for p in CONFIG_FILES.rglob("*.yaml") if p.name not in NOT_STEP_CONFIGS)


def _folder(path):
    return path.relative_to(CONFIG_FILES).parts[0]


def _id(path):
    return str(path.relative_to(CONFIG_FILES))


def step_configs(path):
    """The validated config(s) of ``path``: one, or one per section of a pipeline config."""
    schema = SCHEMAS[_folder(path)]
    config = load_config(path, schema)
    if schema is not PipelineConfig:
        return [config]
    ckpt = "outputs/pipeline/model.pt"  # the pipeline passes its own checkpoint to every later step
    return [config.training_config(), config.audit_config(ckpt), *config.mitigation_configs(ckpt)]


class Built:
    """Data sets and models built once per session: a model is kept as its module names only."""

    def __init__(self, tmp_dir):
        self.tmp_dir, self.roots, self.datasets, self.models = tmp_dir, {}, {}, {}

    def data_root(self, dataset):
        if dataset not in self.roots:
            self.roots[dataset] = str(FIXTURES[dataset](self.tmp_dir / dataset))
        return self.roots[dataset]

    def dataset(self, config):
        key = json.dumps({k: getattr(config, k) for k in (*DATA_KEYS, "artifact") if k != "model_name"},
                         sort_keys=True, default=str)
        if key not in self.datasets:
            base = config.dataset_name.removesuffix("_attacked")
            update = {"data_paths": [self.data_root(base)]} if base in FIXTURES else {}
            splits = get_dataset_from_config(config.model_copy(update=update))
            self.datasets[key] = (splits, splits.train[0][0])
        return self.datasets[key]

    def model_modules(self, config, n_classes, sample):
        key = (config.model_name, n_classes, config.img_size, tuple(sample.shape))
        if key not in self.models:
            model = get_model(config.model_name, n_classes, img_size=config.img_size, in_channels=sample.shape[0])
            if "small" in get_model_spec(config.model_name).tags:  # large models: building is enough
                with torch.no_grad():
                    assert model(sample[None]).shape == (1, n_classes)
            self.models[key] = set(dict(model.named_modules()))
        return self.models[key]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return Built(tmp_path_factory.mktemp("committed_configs"))


def test_every_committed_yaml_has_a_schema():
    assert len(COMMITTED) > 100
    for path in COMMITTED:
        assert _folder(path) in SCHEMAS, f"{_id(path)}: no schema for its folder"


@pytest.mark.parametrize("path", COMMITTED, ids=_id)
def test_committed_config_runs_as_it_stands(path, built):
    _no_machine_paths(path, yaml.safe_load(path.read_text()))
    for config in step_configs(path):
        assert not config.data_paths, f"{_id(path)}: data roots come from local_config.yaml"
        splits, sample = built.dataset(config)
        modules = built.model_modules(config, splits.n_classes, sample)
        spec = get_model_spec(config.model_name)
        for key in LAYER_KEYS:
            layer = getattr(config, key, None)
            if layer is not None:
                assert layer in spec.layer_names and layer in modules, f"{_id(path)}: {key}: {layer}"
        layer_for_config(config)  # the layer a step uses (default included) is inspectable
        if config.ckpt_path and _folder(path) != "pipeline":
            _checkpoint_is_trained_by_a_committed_config(path, config)
        if config.dataset_name.endswith("_attacked"):
            _is_the_published_setting(path, config)


def _is_the_published_setting(path, config):
    published = get_dataset_entry(config.dataset_name).attacked_default
    for key in ("artifact_type", "attacked_classes", "p_artifact"):
        assert getattr(config, key) == published[key], f"{_id(path)}: {key}"
    for key, value in published.get("dataset_options", {}).items():
        assert config.dataset_options.get(key, value) == value, f"{_id(path)}: dataset_options.{key}"


def _no_machine_paths(path, value):
    if isinstance(value, dict):
        for item in value.values():
            _no_machine_paths(path, item)
    elif isinstance(value, list):
        for item in value:
            _no_machine_paths(path, item)
    elif isinstance(value, str):
        assert not value.startswith(("/", "~")) and "\\" not in value, f"{_id(path)}: absolute path {value}"


def _checkpoint_is_trained_by_a_committed_config(path, config):
    """``outputs/training/<dataset>/<model>/<name>/checkpoints/best.pt`` is written by the committed
    training config ``<name>`` of that data set and model, which describes the same data."""
    parts = Path(config.ckpt_path).parts
    assert parts[0] == "outputs" and parts[1] == "training" and parts[-2:] == ("checkpoints", "best.pt"), \
        f"{_id(path)}: ckpt_path {config.ckpt_path} is not a checkpoint of start_training"
    dataset, model, name = parts[2:5]
    training_path = CONFIG_FILES / "training" / dataset.removesuffix("_attacked") / f"{name}.yaml"
    assert training_path.is_file(), f"{_id(path)}: no committed training config writes {config.ckpt_path}"
    training = load_config(training_path, TrainingConfig)
    assert (training.dataset_name, training.model_name) == (dataset, model), _id(path)
    differ = [k for k in DATA_KEYS if getattr(training, k) != getattr(config, k)]
    assert not differ, f"{_id(path)}: {', '.join(differ)} differ from {_id(training_path)}"


@pytest.mark.parametrize("dataset", list(MODELS))
def test_generators_of_the_published_settings_wrote_the_committed_files(dataset):
    """The committed YAML files of ``<dataset>_attacked`` are exactly what their generators write now."""
    for generate, folder in ((reveal_configs, "revealing"), (mitigation_configs, "bias_mitigation_controlled")):
        expected = generate(dataset)
        committed = {p.stem: yaml.safe_load(p.read_text())
                     for p in (CONFIG_FILES / folder / f"{dataset}_attacked").glob("*.yaml")}
        assert committed == expected, f"{folder}/{dataset}_attacked: run its config generator"
