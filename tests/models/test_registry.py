import pytest
import torch

from models import get_model, get_model_spec, layer_for_config, list_models
from utils.checkpoint import save_checkpoint
from utils.errors import UserError


# the project's own models: test modules register more (while they are collected, in file order)
PROJECT_MODELS = [name for name in list_models() if get_model_spec(name).builder.__module__.startswith("models.")]


@pytest.mark.parametrize("name", PROJECT_MODELS)
def test_every_model_builds_and_runs(name):
    size = 224 if name == "vit_b_16" else 32
    model = get_model(name, n_classes=3, img_size=size)
    spec = get_model_spec(name)
    shape = (1, 3, 64) if spec.modality == "signal" else (1, 3, size, size)  # signals: (N, leads, time)
    with torch.no_grad():
        out = model(torch.randn(*shape))
    assert out.shape == (1, 3)
    modules = dict(model.named_modules())
    assert spec.layer_names and all(layer in modules for layer in spec.layer_names)
    assert spec.default_layer in spec.layer_names
    assert not any(getattr(m, "inplace", False) for m in model.modules())


def test_unknown_model_lists_valid_names():
    with pytest.raises(UserError, match="valid names: .*tiny_vgg"):
        get_model("no_such_model", 2)


def test_layer_for_config_falls_back_and_names_the_key():
    from utils.config import AuditConfig

    def config(**keys):
        return AuditConfig(config_name="audit", dataset_name="synth_derm", model_name="tiny_vgg", **keys)

    assert layer_for_config(config(layer_name="features.6")) == "features.6"
    assert layer_for_config(config(layer_name="features.6"), "neuron_layer_name") == "features.6"  # unset
    assert layer_for_config(config()) == get_model_spec("tiny_vgg").default_layer
    both = config(layer_name="features.6", neuron_layer_name="features.14")
    assert layer_for_config(both, "neuron_layer_name") == "features.14" and layer_for_config(both) == "features.6"
    wrong = config(neuron_layer_name="features.99")
    with pytest.raises(UserError, match="'neuron_layer_name': 'features.99' is not an inspectable layer"):
        layer_for_config(wrong, "neuron_layer_name")


def test_checkpoint_round_trip(tmp_path):
    model = get_model("tiny_resnet", 2)
    save_checkpoint(tmp_path / "m.pt", model, "tiny_resnet", 2)
    loaded = get_model("tiny_resnet", 2, ckpt_path=tmp_path / "m.pt")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))


@pytest.mark.parametrize("name,n_classes", [("tiny_vgg", 2), ("tiny_resnet", 5)])
def test_wrong_checkpoint_is_refused(tmp_path, name, n_classes):
    save_checkpoint(tmp_path / "m.pt", get_model("tiny_resnet", 2), "tiny_resnet", 2)
    with pytest.raises(UserError, match="checkpoint .* is for model 'tiny_resnet' with 2 classes"):
        get_model(name, n_classes, ckpt_path=tmp_path / "m.pt")


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        get_model("tiny_vgg", 2, ckpt_path=tmp_path / "bad.pt")


def test_the_project_registers_its_model_families():
    assert {"tiny_vgg", "tiny_resnet", "tiny_vit", "tiny_cnn1d", "vgg16", "resnet50", "vit_b_16",
            "xresnet1d50"} <= set(PROJECT_MODELS)


def test_how_a_family_is_explained_is_one_row_of_its_spec():
    conv, vit = get_model_spec("tiny_vgg").explanation, get_model_spec("tiny_vit").explanation
    assert conv.backends == ("fast", "zennit") and conv.channel_axis == 1 and conv.not_differentiable is None
    assert vit.backends == ("conservative",) and vit.channel_axis == -1 and "transformer" in vit.not_differentiable
    assert get_model_spec("vit_b_16").explanation == vit
