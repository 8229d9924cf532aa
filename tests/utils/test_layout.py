"""One layout rule for every step: the pooled features the corrections fit CAVs on, the gradients
TCAV and RR-ClArC project, and P-ClArC's shift use the channels preprocessing stores, for conv
(N, C, H, W), signal (N, C, T) and transformer token (N, T, D) layers alike; methods that cannot
explain a model family refuse it in one line."""
import numpy as np
import pytest
import torch

from model_training.corrections.layers import ActivationCatcher, get_layer, pooled_activations
from model_training.corrections.pclarc import ProjectionHook
from model_training.corrections.rrclarc import rrclarc_penalty
from models import get_model, get_model_spec
from utils.evaluation.tcav import directional_derivatives
from utils.layout import channel_axis, channels_second, pool
from utils.preprocessing import layer_features

# (model, input shape of one sample, channels of its default layer)
MODELS = {"tiny_vgg": ((3, 16, 16), 64), "tiny_resnet": ((3, 16, 16), 32), "tiny_vit": ((3, 32, 32), 32),
          "tiny_cnn1d": ((12, 64), 64)}


class _Tensors(torch.utils.data.Dataset):
    """The little of a data set that ``pooled_activations`` and TCAV read: already-normalised inputs."""

    augment = False

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], 0

    def load_raw(self, i):
        return self.x[i]

    def normalize(self, x):
        return x


def _setup(name, n=6):
    torch.manual_seed(0)
    shape, _ = MODELS[name]
    model = get_model(name, 3, img_size=shape[-1], in_channels=shape[0]).eval()
    spec = get_model_spec(name)
    return model, spec, spec.default_layer, channel_axis(spec), torch.randn(n, *shape)


def _activation(model, layer, x):
    catcher = ActivationCatcher(get_layer(model, layer))
    try:
        with torch.no_grad():
            model(x)
        return catcher.output
    finally:
        catcher.remove()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_correction_features_are_the_stored_preprocessing_features(name):
    model, _, layer, axis, x = _setup(name)
    stored = layer_features(*(2 * [_activation(model, layer, x)]), axis)
    for mode in ("cavs_max", "cavs_mean"):
        features = pooled_activations(model, _Tensors(x), layer, mode, batch_size=len(x), device="cpu", axis=axis)
        assert features.shape == (len(x), MODELS[name][1])
        torch.testing.assert_close(features, stored[mode], rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tcav_differentiates_along_the_cav_at_every_position(name):
    """TCAV's ``<mean_positions(d f_k / d a), v>`` is the derivative of ``f_k`` when ``a`` moves by
    ``v`` (C entries, the stored features' channels) at every pixel, time step or token, over the
    number of positions; RR-ClArC penalises the same derivative (of the true class, ``target``)."""
    model, _, layer, axis, x = _setup(name, n=4)
    v = torch.randn(MODELS[name][1])
    derivatives = directional_derivatives(model, _Tensors(x), np.arange(len(x)), layer, v.numpy(), batch_size=4,
                                          axis=axis)
    assert derivatives.shape == (len(x), 3)

    step = torch.zeros(len(x), requires_grad=True)  # one step size per sample, differentiated at 0

    def move(module, inputs, output):  # v broadcast by hand: channels last for tokens, second otherwise
        along = v if axis == -1 else v.view(-1, *([1] * (output.dim() - 2)))
        return output + step.view(-1, *([1] * (output.dim() - 1))) * along

    handle = get_layer(model, layer).register_forward_hook(move)
    try:
        logits = model(x)
    finally:
        handle.remove()
    positions = channels_second(_activation(model, layer, x), axis).shape[-1]
    for k in range(logits.shape[1]):
        (expected,) = torch.autograd.grad(logits[:, k].sum(), step, retain_graph=True)
        np.testing.assert_allclose(derivatives[:, k] * positions, expected.numpy(), rtol=1e-4, atol=1e-6)

    catcher = ActivationCatcher(get_layer(model, layer), ensure_grad=True)
    try:
        logits = model(x)
        y = torch.tensor([0, 1, 2, 0])
        penalty = rrclarc_penalty(catcher.output, logits, y, v, criterion="target", axis=axis)
    finally:
        catcher.remove()
    expected = float(np.mean(derivatives[np.arange(len(x)), y.numpy()] ** 2))
    assert float(penalty.detach()) == pytest.approx(expected, rel=1e-4, abs=1e-12)


@pytest.mark.parametrize("mode", ["cavs_max", "cavs_mean"])
def test_pclarc_on_tokens_moves_the_stored_features_along_the_cav(mode):
    """On tiny_vit the projection shifts every token by the same multiple of v (D entries), so the
    stored (N, D) features move along v onto ``mu``; the old rule pooled over the hidden dimension."""
    model, _, layer, axis, x = _setup("tiny_vit")
    assert axis == -1
    before = layer_features(*(2 * [_activation(model, layer, x)]), axis)[mode]
    v = torch.nn.functional.normalize(torch.randn(32), dim=0) * 2.0
    mu = 0.5
    hook = ProjectionHook(v, mu, mode, axis=axis)
    handle = get_layer(model, layer).register_forward_hook(hook)
    try:
        projected = _activation(model, layer, x)  # what the layer passes on (the hook's output)
    finally:
        handle.remove()
    after = layer_features(projected, projected, axis)[mode]
    shift = (mu - before @ v) / (v @ v)
    torch.testing.assert_close(after, before + shift[:, None] * v, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(after @ v, torch.full((len(x),), mu), rtol=1e-5, atol=1e-5)
    unprojected = _activation(model, layer, x)
    torch.testing.assert_close(projected - unprojected, (shift[:, None, None] * v).expand_as(projected),
                               rtol=1e-5, atol=1e-5)
    assert hook.state()["axis"] == -1  # the checkpoint keeps it: attach rebuilds the same hook


@pytest.mark.parametrize("method", ["PClarc", "RRClarc"])
def test_corrections_on_tiny_vit_take_the_axis_from_the_model_spec(write_config, tmp_path, method):
    """Through the mitigation step's own context: CAVs over the 32 hidden channels, not the 17 tokens."""
    from datasets import get_dataset
    from model_training.corrections import get_correction_method
    from model_training.corrections.run import build_context
    from utils.checkpoint import save_checkpoint

    options = {"n_train": 24, "n_val": 8, "n_test": 8}
    splits = get_dataset("synth_derm", img_size=32, seed=0, dataset_options=options, artifact="band_aid")
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "vit.pt", get_model("tiny_vit", splits.n_classes, img_size=32), "tiny_vit",
                           splits.n_classes)
    _, load = _mitigation_config(write_config, model_name="tiny_vit", method=method, ckpt_path=str(ckpt),
                                 dataset_options=options, batch_size=8)
    config = load()
    model = get_model("tiny_vit", splits.n_classes, ckpt_path=ckpt, img_size=32)
    ctx = build_context(config, model, splits, torch.device("cpu"))
    assert ctx.channel_axis == -1
    correction = get_correction_method(method)(config)
    correction.prepare(ctx)
    assert ctx.extras["train_features"].shape == (24, 32)
    state = correction.state()
    assert (state["direction"] if method == "PClarc" else state["cav"]).shape == (32,)
    if method == "PClarc":
        assert state["axis"] == -1
    correction.finish(model)


def test_pool_keeps_the_conv_rule():
    """Conv and signal layers: the same numbers as the spatial pooling over axes 2.. it replaced."""
    torch.manual_seed(0)
    for a in (torch.randn(3, 5, 4, 4), torch.randn(3, 5, 7), torch.randn(3, 5)):
        flat = a.flatten(2) if a.dim() > 2 else a[..., None]
        assert torch.equal(pool(a, "cavs_max"), flat.amax(2))
        assert torch.equal(pool(a, "cavs_mean"), flat.mean(2))
    tokens = torch.randn(3, 7, 5)
    assert torch.equal(pool(tokens, "cavs_max", -1), tokens.amax(1))


# --- refusals --------------------------------------------------------------------------------------
REFUSED = [({"method": "ISNet", "variant": "original"}, "ISNet original cannot explain tiny_vit"),
           ({"method": "ISNet", "variant": "selective"}, "ISNet selective cannot explain tiny_vit"),
           ({"method": "ISNet", "variant": "stochastic", "deep_supervision": True},
            "ISNet stochastic deep cannot explain tiny_vit"),
           ({"method": "ISNet", "variant": "selective", "heatmap": "dual"}, "ISNet selective dual cannot explain tiny_vit"),
           ({"method": "RRR", "rrr_explanation": "lrp"}, "RRR with rrr_explanation 'lrp' cannot explain tiny_vit"),
           ({"method": "RRR", "rrr_explanation": "lrp_composite"},
            "RRR with rrr_explanation 'lrp_composite' cannot explain tiny_vit")]


def _mitigation_config(write_config, **values):
    from utils.config import load_config
    from utils.config.mitigation import MitigationConfig

    values = {"dataset_name": "synth_derm", "img_size": 32, "artifact": "band_aid", "ckpt_path": "model.pt", **values}
    path = write_config("mitigation", **values)
    return path, lambda: load_config(path, MitigationConfig)


@pytest.mark.parametrize("options,start", REFUSED, ids=[o["method"] + "-" + "-".join(map(str, o.values())) for o, _ in REFUSED])
def test_methods_without_differentiable_lrp_refuse_transformers_in_one_line(write_config, options, start):
    from utils.errors import UserError

    _, load = _mitigation_config(write_config, model_name="tiny_vit", **options)
    with pytest.raises(UserError) as error:
        load()
    message = str(error.value)
    assert "\n" not in message and start in message
    assert "ckpt_path" not in message  # not followed by the whole config (which may hold secrets)
    assert "no differentiable LRP for transformer attention" in message
    assert "rrr_explanation 'gradient'" in message and "RRClarc" in message and "PClarc" in message
    _, load = _mitigation_config(write_config, model_name="tiny_vgg", **options)
    assert load().method == options["method"]  # the refusal follows the model family, not the method


@pytest.mark.parametrize("options", [{"method": "RRR", "rrr_explanation": "gradient"}, {"method": "RRClarc"},
                                     {"method": "PClarc"}, {"method": "ReactivePClarc"}, {"method": "Vanilla"},
                                     {"method": "ISNet", "heatmap": "grad_x_input"}])
def test_what_the_refusal_suggests_is_accepted_for_transformers(write_config, options):
    _, load = _mitigation_config(write_config, model_name="tiny_vit", **options)
    assert load().model_name == "tiny_vit"


@pytest.mark.parametrize("model,options,message", [
    ("tiny_vgg", {"heatmap": "dual"}, "ISNet selective dual deep: deep_supervision is not available with heatmap 'dual'"),
    ("tiny_vit", {"heatmap": "grad_x_input"},
     "ISNet selective deep (grad×input) cannot supervise the hidden layers of tiny_vit: they are tokens")])
def test_isnet_deep_supervision_is_refused_where_it_has_no_hidden_heatmaps(write_config, model, options, message):
    from utils.errors import UserError

    _, load = _mitigation_config(write_config, model_name=model, method="ISNet", deep_supervision=True, **options)
    with pytest.raises(UserError) as error:
        load()
    assert "\n" not in str(error.value) and message in str(error.value) and "deep_supervision false" in str(error.value)


def test_the_refusal_stops_the_step_with_exit_code_2(write_config, capsys):
    from experiments.mitigation_experiments.start_model_correction import main

    path, _ = _mitigation_config(write_config, model_name="tiny_vit", method="RRR", rrr_explanation="lrp")
    with pytest.raises(SystemExit) as exit_info:
        main(["--config_file", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot explain tiny_vit" in err
