"""Correction methods on a tiny untrained model: finite losses, gradients only where trainable,
P-ClArC geometry, ISNet building blocks, corrected-checkpoint round trip."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from datasets import get_dataset
from model_training.corrections import get_correction_method, list_corrections, load_corrected_model
from model_training.corrections.isnet import background_loss, foreground_loss, gwrp, tune_bounds
from model_training.corrections.layers import freeze_up_to, pool
from model_training.corrections.pclarc import ProjectionHook
from model_training.corrections.rrr import EXPLANATIONS, PENALTIES
from model_training.corrections.run import build_context
from models import get_model
from tests.conftest import TINY_DATA
from utils.checkpoint import save_checkpoint
from utils.config import load_config
from utils.config.mitigation import MitigationConfig
from utils.errors import ConfigError, UserError

LAYER = "features.6"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny data and an untrained tiny_vgg checkpoint (gradients, not accuracy, are tested here)."""
    torch.manual_seed(0)
    splits = get_dataset("synth_derm", img_size=32, seed=0, dataset_options=TINY_DATA["dataset_options"],
                         artifact="band_aid")
    model = get_model("tiny_vgg", splits.n_classes)
    ckpt = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(ckpt, model, "tiny_vgg", splits.n_classes)
    return splits, ckpt


def _config(tmp_path, ckpt, **values):
    import yaml

    path = tmp_path / "mitigation.yaml"
    path.write_text(yaml.safe_dump({**TINY_DATA, "model_name": "tiny_vgg", "artifact": "band_aid", "ckpt_path": str(ckpt),
                                    "layer_name": LAYER, "batch_size": 8, "output_dir": str(tmp_path / "out"),
                                    "tune_epochs": 0, **values}))
    return load_config(path, MitigationConfig)


def _batch(ctx, n=8):
    """A batch with artifact samples (masks) and samples without."""
    has = np.flatnonzero(ctx.train_set.has_mask)[: n // 2]
    without = np.flatnonzero(~ctx.train_set.has_mask)[: n - len(has)]
    items = [ctx.train_set[int(i)] for i in np.concatenate([has, without])]
    return [torch.stack([torch.as_tensor(item[k]) for item in items]) for k in range(5)]


CASES = [("Vanilla", {}), ("RRR", {"rrr_penalty": "squared", "lamb": 10.0}), ("RRR", {"rrr_penalty": "cosine"}),
         ("RRR", {"rrr_penalty": "share", "lamb": 10.0}),
         ("RRR", {"rrr_explanation": "lrp", "rrr_penalty": "share", "lamb": 10.0}),
         ("RRR", {"rrr_explanation": "lrp_composite", "rrr_penalty": "positive_share", "lamb": 10.0}),
         ("RRClarc", {"criterion": "all_logits_random"}), ("RRClarc", {"criterion": "logprobs"}),
         ("RRClarc", {"criterion": "target"}), ("ISNet", {"variant": "selective", "C1": 1.0, "C2": 10.0}),
         ("ISNet", {"variant": "stochastic", "selective_class": "lowest_logit"}),
         ("ISNet", {"variant": "original", "deep_supervision": True, "input_rule": "gradient", "C1": 1.0, "C2": 5.0}),
         ("ISNet", {"variant": "selective", "heatmap": "dual", "C1": 1.0, "C2": 10.0, "C1_zplus": 1.0, "C2_zplus": 10.0}),
         ("ISNet", {"variant": "stochastic", "heatmap": "dual"}),  # both heatmaps' bounds tuned
         ("ISNet", {"variant": "selective", "heatmap": "grad_x_input"}),
         ("ISNet", {"variant": "original", "heatmap": "grad_x_input", "deep_supervision": True, "C1": 1.0, "C2": 5.0})]


@pytest.mark.parametrize("method,options", CASES, ids=[f"{m}-{'-'.join(map(str, o.values()))}" for m, o in CASES])
def test_loss_is_finite_and_gradients_respect_freezing(tiny, tmp_path, method, options):
    splits, ckpt = tiny
    config = _config(tmp_path, ckpt, method=method, **options)
    model = get_model("tiny_vgg", splits.n_classes, ckpt_path=ckpt, img_size=32)
    ctx = build_context(config, model, splits, torch.device("cpu"))
    frozen = freeze_up_to(model, LAYER, splits.train.normalize(splits.train.load_raw(0))[None])
    correction = get_correction_method(method)(config)
    correction.prepare(ctx)
    model.train()
    for module in frozen:
        module.eval()
    x, y, *rest = _batch(ctx)
    if correction.input_requires_grad:
        x.requires_grad_(True)
    logits = correction.forward(model, x)  # the Trainer's forward: shared with the heatmaps where a method has one
    extra = correction.extra_loss(model, (x, y, *rest), logits)
    loss = F.cross_entropy(logits, y) + (extra if extra is not None else 0.0)
    assert torch.isfinite(loss)
    if method != "Vanilla":
        assert extra is not None and torch.isfinite(extra) and extra.requires_grad
    loss.backward()
    correction.finish(model)
    frozen_params = [p for m in frozen for p in m.parameters(recurse=False)]
    assert frozen_params and all(p.grad is None and not p.requires_grad for p in frozen_params)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    assert all(torch.isfinite(p.grad).all() for p in trainable if p.grad is not None)


def test_share_penalty_is_the_scale_free_share_of_the_gradient_inside_the_mask():
    grad = torch.zeros(2, 3, 4, 4)
    grad[0, :, :2] = 1.0  # sample 0: all of the gradient in the top half
    grad[1] = torch.randn(3, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[:, :, :2] = 1.0
    share = PENALTIES["share"](grad, mask)
    assert share[0] == pytest.approx(1.0)
    expected = grad[1].abs().sum(0)[:2].sum() / grad[1].abs().sum()
    assert share[1] == pytest.approx(float(expected))
    # shrinking the gradient (the squared penalty's escape) leaves the share unchanged
    assert torch.allclose(PENALTIES["share"](grad * 1e-3, mask), share)
    assert torch.allclose(PENALTIES["share"](grad, 1.0 - mask)[0], torch.tensor(0.0))


def test_positive_share_penalty_is_the_artifact_relevance_metric():
    from utils.evaluation.relevance import relevance_share

    torch.manual_seed(0)
    relevance = torch.randn(3, 3, 6, 6)
    mask = (torch.rand(3, 1, 6, 6) > 0.6).float()
    assert torch.allclose(PENALTIES["positive_share"](relevance, mask), relevance_share(relevance, mask[:, 0]))
    assert torch.allclose(PENALTIES["positive_share"](relevance * 1e-3, mask), PENALTIES["positive_share"](relevance, mask))


def test_frozen_batchnorm_keeps_statistics(tiny, tmp_path):
    splits, ckpt = tiny
    model = get_model("tiny_vgg", splits.n_classes, ckpt_path=ckpt, img_size=32)
    frozen = freeze_up_to(model, LAYER, splits.train.normalize(splits.train.load_raw(0))[None])
    names = [n for n, m in model.named_modules() if m in frozen]
    assert names == ["features.0", "features.1", "features.4", "features.5"]


def test_pclarc_moves_projection_to_clean_mean_and_keeps_the_complement():
    torch.manual_seed(0)
    a = torch.randn(6, 5, 4, 4).relu()
    v = F.normalize(torch.randn(5), dim=0)
    hook = ProjectionHook(v, mu=0.7, mode="cavs_max")
    out = hook(None, None, a)
    assert torch.allclose(pool(out, "cavs_max") @ v, torch.full((6,), 0.7), atol=1e-5)
    change = out - a  # only along v, at every position
    orthogonal = change - (torch.einsum("nchw,c->nhw", change, v)[:, None] * v.view(1, -1, 1, 1))
    assert orthogonal.abs().max() < 1e-5
    mean_hook = ProjectionHook(v, mu=-0.2, mode="cavs_mean")
    assert torch.allclose(pool(mean_hook(None, None, a), "cavs_mean") @ v, torch.full((6,), -0.2), atol=1e-5)


def test_reactive_pclarc_leaves_undetected_samples_untouched():
    torch.manual_seed(1)
    a = torch.randn(8, 5, 3, 3)
    v = F.normalize(torch.randn(5), dim=0)
    detector = F.normalize(torch.randn(5), dim=0)
    hook = ProjectionHook(v, mu=0.3, mode="cavs_max", detector=detector, detector_bias=-0.1)
    out = hook(None, None, a)
    detected = (pool(a, "cavs_max") @ detector - 0.1) > 0
    assert detected.any() and (~detected).any()
    assert torch.equal(out[~detected], a[~detected])
    assert not torch.allclose(out[detected], a[detected])


def test_pclarc_on_data_moves_artifact_samples_to_the_clean_mean(tiny, tmp_path):
    splits, ckpt = tiny
    config = _config(tmp_path, ckpt, method="PClarc")
    model = get_model("tiny_vgg", splits.n_classes, ckpt_path=ckpt, img_size=32)
    ctx = build_context(config, model, splits, torch.device("cpu"))
    correction = get_correction_method("PClarc")(config)
    correction.prepare(ctx)
    hook = correction.hook
    features = ctx.extras["train_features"]  # before the projection
    clean_mean = float((features[~torch.from_numpy(ctx.artifact_train)] @ hook.direction).mean())
    assert hook.mu == pytest.approx(clean_mean, rel=1e-5)


def test_gwrp_with_zero_decay_is_max_and_ignores_invalid_entries():
    values = torch.tensor([[0.1, 0.9, 0.5, 3.0]])
    valid = torch.tensor([[True, True, True, False]])
    assert gwrp(values, valid, 0.0).item() == pytest.approx(0.9)
    assert gwrp(values, torch.ones_like(valid), 0.0).item() == pytest.approx(3.0)
    d = 0.5  # weights 1, 0.5, 0.25 over 0.9, 0.5, 0.1
    assert gwrp(values, valid, d).item() == pytest.approx((0.9 + 0.25 + 0.025) / 1.75)


def test_isnet_losses():
    rel = torch.zeros(1, 1, 4, 4)
    fg = torch.zeros(1, 1, 4, 4)
    fg[..., :2, :] = 1
    rel[..., :2, :] = 1.0  # all relevance on the foreground: no background loss
    assert background_loss(rel, fg, 0.9, 1.0).item() == pytest.approx(0.0)
    rel[..., 3, 3] = 2.0  # a background hot spot twice the foreground mean
    assert background_loss(rel, fg, 0.0, 1.0).item() == pytest.approx(np.log(3.0))
    assert foreground_loss(rel, fg, 4.0, 16.0).item() == pytest.approx(((4 - 8) ** 2 * 0 + 0) / 16)
    assert foreground_loss(rel, fg, 10.0, 20.0).item() == pytest.approx((10 - 8) ** 2 / 100)


# --- ISNet's heatmaps: dual (epsilon-LRP and z+) and the grad x input ablation --------------------
BOUNDS = {"C1": 1e-3, "C2": 1e-2, "C1_zplus": 2e-3, "C2_zplus": 5e-3}


def _prepared(splits, config, model):
    ctx = build_context(config, model, splits, torch.device("cpu"))
    correction = get_correction_method("ISNet")(config)
    correction.prepare(ctx)
    model.train()
    x, y, _, foreground, _ = _batch(ctx)
    return correction, x, y, foreground


def test_dual_isnet_loss_is_the_mean_of_its_two_heatmaps_losses_each_with_its_own_bounds(tiny, tmp_path):
    from model_training.corrections.isnet import background_loss, foreground_loss
    from utils.lrp.attribution import get_attributor
    from utils.lrp.fast.backend import batch_norm_statistics

    splits, ckpt = tiny
    model = get_model("tiny_vgg", splits.n_classes, ckpt_path=ckpt, img_size=32)
    dual, x, y, foreground = _prepared(splits, _config(tmp_path, ckpt, method="ISNet", freeze=False, variant="original",
                                                       heatmap="dual", **BOUNDS), model)
    single, *_ = _prepared(splits, _config(tmp_path, ckpt, method="ISNet", freeze=False, variant="original",
                                           **BOUNDS), model)
    assert dual.bounds == {"lrp": (1e-3, 1e-2), "zplus": (2e-3, 5e-3)} and single.bounds == {"lrp": (1e-3, 1e-2)}
    found = dual.heatmaps(dual.explainer, x, y, logits=dual.forward(model, x))
    assert set(found) == {"lrp", "zplus"} and len(found["zplus"]) == splits.n_classes
    # z+: the model's own composite (what the evaluation measures) of each class, with this batch's statistics
    fast = get_attributor(model, backend="fast")
    with batch_norm_statistics(model) as statistics:
        model(x)
    zplus = [fast.differentiable_heatmap(x, torch.full((len(x),), k), statistics) for k in range(splits.n_classes)]
    for rel, expected in zip(found["zplus"], zplus):
        assert torch.allclose(rel["input"], expected, rtol=1e-4, atol=1e-6)
    # epsilon-LRP: the single-heatmap ISNet's heatmaps and loss
    epsilon = single.heatmap_loss(single.heatmaps(single.explainer, x, y, logits=single.forward(model, x)), foreground)
    config = dual.config  # A = B = 1
    zplus_loss = torch.stack([(background_loss(h, foreground, config.d, config.E)
                               + foreground_loss(h, foreground, config.C1_zplus, config.C2_zplus)).mean()
                              for h in zplus]).mean()
    loss = dual.heatmap_loss(found, foreground)
    assert torch.isfinite(loss) and torch.allclose(loss, (epsilon + zplus_loss) / 2, rtol=1e-4)
    assert not torch.allclose(loss, epsilon, rtol=1e-3)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert any(float(p.grad.abs().sum()) > 0 for p in model.parameters())


def test_dual_isnet_explains_the_selective_log_odds_with_the_composite(tiny, tmp_path):
    """The z+ heatmap of eta = f_c - logsumexp_(k != c) f_k starts from the logits weighed as eta's
    gradient weighs them: the class heatmaps' softmax-weighted difference (LRP is linear)."""
    from utils.lrp.attribution import get_attributor
    from utils.lrp.fast.backend import batch_norm_statistics

    splits, ckpt = tiny
    model = get_model("tiny_vgg", splits.n_classes, ckpt_path=ckpt, img_size=32)
    dual, x, y, _ = _prepared(splits, _config(tmp_path, ckpt, method="ISNet", freeze=False, variant="selective",
                                              heatmap="dual", **BOUNDS), model)
    (rel,) = dual.heatmaps(dual.explainer, x, y, logits=dual.forward(model, x))["zplus"]
    fast = get_attributor(model, backend="fast")
    with batch_norm_statistics(model) as statistics:
        logits = model(x)
    others = torch.softmax(logits.detach().scatter(1, y[:, None], float("-inf")), 1)  # 0 at the label
    weights = F.one_hot(y, splits.n_classes) - others
    heatmaps = torch.stack([fast.differentiable_heatmap(x, torch.full((len(x),), k), statistics)
                            for k in range(splits.n_classes)], 1)
    expected = (weights.view(*weights.shape, 1, 1, 1) * heatmaps).sum(1)
    assert torch.allclose(rel["input"], expected, rtol=1e-4, atol=1e-6)


def test_grad_x_input_isnet_trains_on_the_input_gradient_times_the_input(tiny, tmp_path):
    splits, ckpt = tiny
    model = get_model("tiny_vgg", splits.n_classes, ckpt_path=ckpt, img_size=32)
    ablation, x, y, foreground = _prepared(splits, _config(tmp_path, ckpt, method="ISNet", freeze=False,
                                                           variant="selective", heatmap="grad_x_input", **BOUNDS), model)
    assert ablation.bounds == {"grad_x_input": (1e-3, 1e-2)}
    found = ablation.heatmaps(ablation.explainer, x, y, logits=ablation.forward(model, x))
    (rel,) = found["grad_x_input"]
    inputs = x.clone().requires_grad_(True)
    logits = model(inputs)
    eta = logits.gather(1, y[:, None])[:, 0] - torch.logsumexp(logits.scatter(1, y[:, None], float("-inf")), 1)
    (grad,) = torch.autograd.grad(eta.sum(), inputs)
    assert torch.allclose(rel["input"], inputs * grad, rtol=1e-5, atol=1e-7)
    loss = ablation.heatmap_loss(found, foreground)
    single, *_ = _prepared(splits, _config(tmp_path, ckpt, method="ISNet", freeze=False, variant="selective",
                                           **BOUNDS), model)
    epsilon = single.heatmap_loss(single.heatmaps(single.explainer, x, y, logits=single.forward(model, x)), foreground)
    assert torch.isfinite(loss) and not torch.allclose(loss, epsilon, rtol=1e-3)
    loss.backward()  # through the gradient: second derivatives reach the parameters
    assert any(float(p.grad.abs().sum()) > 0 for p in model.parameters())


def test_grad_x_input_isnet_corrects_a_vision_transformer():
    """The ablation needs only autograd: a ViT gets a finite loss whose gradient reaches its weights."""
    from model_training.corrections.isnet import ISNet
    from utils.device import differentiable_attention

    config = MitigationConfig(config_name="vit", artifact="band_aid", method="ISNet", model_name="tiny_vit",
                              dataset_name="synth_derm", img_size=32, from_scratch=True, heatmap="grad_x_input",
                              C1=1.0, C2=10.0)
    torch.manual_seed(0)
    model = get_model("tiny_vit", 2, img_size=32).train()
    isnet = ISNet(config)
    bound = torch.full((3, 1, 1), 2.5)
    isnet.setup(model, -bound, bound, (), torch.nn.CrossEntropyLoss())
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 1, 0])
    foreground = torch.zeros(4, 1, 32, 32)
    foreground[..., 8:24, 8:24] = 1
    with differentiable_attention():  # as the Trainer runs a correction's forward
        logits = isnet.forward(model, x)
        loss = F.cross_entropy(logits, y) + isnet.extra_loss(model, (x, y, None, foreground, None), logits)
    assert torch.isfinite(loss)
    loss.backward()
    assert any(float(p.grad.abs().sum()) > 0 for p in model.parameters() if p.grad is not None)


def test_isnet_names_the_bounds_it_cannot_tune_from_zero_heatmaps(tiny, tmp_path):
    """An output layer initialised to zero (torchvision's ViT head) makes every heatmap of the fresh
    model zero, and C1 = 0 would divide the foreground loss: one line names the keys to set instead."""
    splits, ckpt = tiny
    config = _config(tmp_path, ckpt, method="ISNet", heatmap="grad_x_input", C1_zplus=1.0)
    model = get_model("tiny_vgg", splits.n_classes, img_size=32)
    torch.nn.init.zeros_(model.classifier[-1].weight)
    ctx = build_context(config, model, splits, torch.device("cpu"))
    with pytest.raises(UserError, match="^ISNet: the grad_x_input heatmaps .* all zero .*; set C1 and C2$"):
        get_correction_method("ISNet")(config).prepare(ctx)


def test_c1_c2_formula():
    totals = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    mu, s = totals.mean(), totals.std()
    c1, c2 = tune_bounds(totals)
    assert c1 == pytest.approx(max(mu / 5, mu - 3 * s)) and c2 == pytest.approx(min(25 * c1, mu + 3 * s))
    c1, c2 = tune_bounds(np.array([10.0, 10.0, 10.0]))  # no spread: [mu, mu]
    assert (c1, c2) == (pytest.approx(10.0), pytest.approx(10.0))


def test_corrected_checkpoint_round_trip(tiny, tmp_path):
    from experiments.mitigation_experiments.start_model_correction import main
    from model_training.corrections.run import corrected_checkpoint_path

    splits, ckpt = tiny
    for method in ("ReactivePClarc",):  # its state is a superset of P-ClArC's
        config = _config(tmp_path, ckpt, method=method, config_name=f"rt_{method}")
        path = tmp_path / f"{method}.yaml"
        path.write_text((tmp_path / "mitigation.yaml").read_text())
        main(["--config_file", str(path), "--overwrite"])
        model = get_model("tiny_vgg", splits.n_classes, ckpt_path=ckpt, img_size=32)
        ctx = build_context(config, model, splits, torch.device("cpu"))
        get_correction_method(method)(config).prepare(ctx)  # the same correction, built in memory
        plain = load_corrected_model(ckpt)
        loaded = load_corrected_model(corrected_checkpoint_path(load_config(path, MitigationConfig)))
        x = torch.stack([splits.test.normalize(splits.test.with_mode("attacked").load_raw(i)) for i in range(8)])
        with torch.no_grad():
            assert torch.allclose(loaded(x), model.eval()(x), atol=1e-6)
            assert not torch.allclose(loaded(x), plain(x), atol=1e-6)  # the hook really is there


def test_config_errors(tiny, tmp_path):
    splits, ckpt = tiny
    with pytest.raises(ConfigError, match="method"):
        _config(tmp_path, ckpt, method="RRRR")
    with pytest.raises(ConfigError, match="localization_dir"):
        _config(tmp_path, ckpt, method="RRR", source_masks="localization")
    with pytest.raises(ConfigError, match="heatmap: dual"):  # the paper's "Dual ISNet" is a heatmap choice here
        _config(tmp_path, ckpt, method="ISNet", variant="dual")
    assert {"Vanilla", "RRR", "RRClarc", "PClarc", "ReactivePClarc", "ISNet"} <= set(list_corrections())


def test_methods_own_their_defaults_and_special_cases(tiny, tmp_path):
    _, ckpt = tiny
    assert _config(tmp_path, ckpt, method="ISNet").grad_clip == 1.0  # ISNet's own default
    assert _config(tmp_path, ckpt, method="ISNet", grad_clip=5.0).grad_clip == 5.0  # the user's value wins
    assert _config(tmp_path, ckpt, method="RRR").grad_clip is None
    isnet, rrr = get_correction_method("ISNet"), get_correction_method("RRR")
    assert isnet.starts_from_scratch(_config(tmp_path, ckpt, method="ISNet", from_scratch=True))
    assert not isnet.starts_from_scratch(_config(tmp_path, ckpt, method="ISNet"))
    assert not rrr.starts_from_scratch(_config(tmp_path, ckpt, method="RRR", from_scratch=True))
    assert _config(tmp_path, "", method="ISNet", from_scratch=True).ckpt_path == ""  # no model to correct: fine
    with pytest.raises(ConfigError, match="ckpt_path"):
        _config(tmp_path, "", method="RRR", from_scratch=True)  # from_scratch is ISNet's: RRR needs a model


def test_masks_from_localization_output(tiny, tmp_path):
    from model_training.corrections.data import load_localization_masks
    from utils.bias.localization import write_mask
    from utils.io import write_json

    splits, ckpt = tiny
    train = splits.train
    ids = [int(i) for i in np.flatnonzero(train.artifact_labels("band_aid"))[:3]]
    folder = tmp_path / "localization" / "band_aid"
    samples = {}
    for i in ids:
        sid = train.sample_ids[i]
        write_mask(folder / "masks" / f"{sid}.png", train.get_mask(i, "band_aid"))
        samples[sid] = {"mask": f"masks/{sid}.png"}
    write_json(folder / "index.json", {"artifact": "band_aid", "split": "train", "samples": samples})
    config = _config(tmp_path, ckpt, method="RRR", source_masks="localization",
                     localization_dir=str(tmp_path / "localization"))
    ctx = build_context(config, get_model("tiny_vgg", splits.n_classes, img_size=32), splits, torch.device("cpu"))
    assert np.flatnonzero(ctx.train_set.has_mask).tolist() == ids
    ctx.train_set.augment = False
    assert torch.equal(ctx.train_set[ids[0]][2][0].bool(), train.get_mask(ids[0], "band_aid"))
    assert len(load_localization_masks(config)) == 3


def test_fine_tuning_keeps_batchnorm_statistics(tiny, tmp_path):
    from model_training.corrections.run import batchnorm_kept_in_eval

    splits, ckpt = tiny
    model = get_model("tiny_vgg", splits.n_classes, img_size=32)
    for method in ("ISNet", "RRR", "Vanilla"):  # auto: a trained model keeps its statistics
        kept = batchnorm_kept_in_eval(_config(tmp_path, ckpt, method=method), model)
        assert len(kept) == 4 and all(isinstance(m, torch.nn.BatchNorm2d) for m in kept)
    assert batchnorm_kept_in_eval(_config(tmp_path, ckpt, method="ISNet", from_scratch=True), model, True) == []
    assert batchnorm_kept_in_eval(_config(tmp_path, ckpt, method="RRR", batchnorm_statistics="train"), model) == []


def test_rrr_on_the_composite_heatmap_names_the_obstacle_for_models_the_fast_backend_cannot_explain():
    from types import SimpleNamespace

    config = SimpleNamespace(model_name="tiny_vit")
    ctx = SimpleNamespace(model=get_model("tiny_vit", 2, img_size=32))
    # tiny_vit has no differentiable epsilon-LRP either: only the gradient is suggested (the config is
    # refused before this point, tests/utils/test_layout.py)
    with pytest.raises(UserError, match="rrr_explanation 'lrp_composite'.*tiny_vit.*use rrr_explanation 'gradient'$"):
        EXPLANATIONS["lrp_composite"](ctx, config)


# training-mode BatchNorm, every layer trainable
ZERO_STRENGTH = [("RRR", {"rrr_explanation": "gradient", "rrr_penalty": "squared"}, {"lamb": 100.0}),
                 ("RRR", {"rrr_explanation": "lrp", "rrr_penalty": "share"}, {"lamb": 10.0}),
                 ("RRR", {"rrr_explanation": "lrp_composite", "rrr_penalty": "positive_share"}, {"lamb": 10.0}),
                 ("RRClarc", {"criterion": "all_logits_random"}, {"lamb": 1000.0}),
                 ("ISNet", {"variant": "selective", "C1": 1.0, "C2": 10.0}, {"P": 0.7}),
                 ("ISNet", {"variant": "stochastic", "C1": 1.0, "C2": 10.0}, {"P": 0.7}),
                 ("ISNet", {"variant": "stochastic", "heatmap": "dual", "C1": 1.0, "C2": 10.0, "C1_zplus": 1.0,
                            "C2_zplus": 10.0}, {"P": 0.7}),
                 ("ISNet", {"variant": "selective", "heatmap": "grad_x_input", "C1": 1.0, "C2": 10.0}, {"P": 0.7})]
ZERO = {"lamb": 0.0, "P": 0.0}


def _one_epoch_correction(tmp_path, ckpt, name, method, options, steps):
    from model_training.corrections.run import run_correction

    batch_size = TINY_DATA["dataset_options"]["n_train"] // steps
    config = _config(tmp_path, ckpt, method=method, config_name=name, freeze=False, batch_size=batch_size,
                     num_epochs=1, batchnorm_statistics="train", grad_clip=1.0, max_clean_drop=1.0, **options)
    out_dir, metrics = run_correction(config)
    return load_corrected_model(out_dir / "checkpoints" / "corrected.pt").state_dict(), metrics


@pytest.mark.parametrize("method,options,strength", ZERO_STRENGTH,
                         ids=[f"{m}-{'-'.join(map(str, o.values()))}" for m, o, _ in ZERO_STRENGTH])
def test_a_correction_at_strength_zero_is_vanilla_fine_tuning(tiny, tmp_path, method, options, strength):
    """Same seed, strength 0: the same weights, running statistics and accuracy as Vanilla; at any
    strength the running statistics after one step are Vanilla's, as only the training batch's own
    forward pass may update them (not a heatmap's extra pass, nor a method's draws from the
    augmentation's random stream)."""
    splits, ckpt = tiny
    vanilla, vanilla_metrics = _one_epoch_correction(tmp_path, ckpt, "vanilla", "Vanilla", {}, steps=3)
    zero, zero_metrics = _one_epoch_correction(tmp_path, ckpt, "zero", method,
                                               {**options, **{k: ZERO[k] for k in strength}}, steps=3)
    assert vanilla.keys() == zero.keys()
    for key, value in vanilla.items():
        assert torch.allclose(zero[key].double(), value.double(), rtol=1e-6, atol=1e-7), key
    assert zero_metrics["val"]["ch"]["accuracy"] == vanilla_metrics["val"]["ch"]["accuracy"]
    assert zero_metrics["val"] == vanilla_metrics["val"]
    trained = [k for k in vanilla if k.endswith("weight")]
    assert any(not torch.allclose(vanilla[k], load_corrected_model(ckpt).state_dict()[k]) for k in trained)
    # one step: the running statistics come from the batch's forward with the weights before the step
    one_vanilla, _ = _one_epoch_correction(tmp_path, ckpt, "vanilla_1", "Vanilla", {}, steps=1)
    strong, _ = _one_epoch_correction(tmp_path, ckpt, "strong_1", method, {**options, **strength}, steps=1)
    for key in [k for k in one_vanilla if "running" in k]:
        assert torch.allclose(strong[key].double(), one_vanilla[key].double(), rtol=1e-6, atol=1e-7), key
    assert any(not torch.allclose(strong[k], one_vanilla[k]) for k in trained)  # the penalty does act


def test_localization_masks_stand_in_for_missing_masks_when_pasting(tmp_path):
    """An annotated artifact without mask files gets its clean/attacked subsets from the localization
    step's masks (source_masks: localization); without them, only the data as it is."""
    from model_training.corrections.data import correction_splits
    from tests.datasets.fixture_trees import image_folder_tree
    from utils.bias.localization import write_mask
    from utils.io import write_json

    root = image_folder_tree(tmp_path / "images")
    for mask in (root / "masks" / "ruler").iterdir():
        mask.unlink()
    folder = tmp_path / "localization" / "ruler"
    strip = torch.zeros(16, 16, dtype=torch.bool)
    strip[:3] = True
    write_mask(folder / "masks" / "img_00.png", strip)
    write_json(folder / "index.json", {"artifact": "ruler", "split": "train",
                                       "samples": {"img_00.png": {"mask": "masks/img_00.png"}}})
    common = {"dataset_name": "image_folder", "data_paths": [str(root)], "img_size": 16, "model_name": "tiny_vgg",
              "artifact": "ruler", "ckpt_path": "unused.pt", "config_name": "loc", "method": "RRR"}
    with pytest.warns(UserWarning, match="no training sample annotated with it has a mask"):
        assert correction_splits(MitigationConfig(**common)).test.target is None
    splits = correction_splits(MitigationConfig(**common, source_masks="localization",
                                                localization_dir=str(tmp_path / "localization")))
    attacked = splits.test.with_mode("attacked")
    assert attacked.target == "ruler"
    pasted = [attacked.get_mask(i, "ruler") for i in np.flatnonzero(~attacked.carries)]
    assert pasted and all(int(m.sum()) == 3 * 16 for m in pasted)  # the localized strip, flipped or moved


# methods that draw from a generator of their own while fine-tuning
OWN_DRAWS = [("RRClarc", {"criterion": "all_logits_random", "lamb": 1000.0}),
             ("ISNet", {"variant": "stochastic", "C1": 1.0, "C2": 10.0, "P": 0.7})]


@pytest.mark.parametrize("method,options", OWN_DRAWS, ids=[m for m, _ in OWN_DRAWS])
def test_a_correction_continued_after_an_epoch_is_the_uninterrupted_one(tiny, tmp_path, method, options):
    """A run of one epoch resumed to two gives the weights of a two-epoch run bit for bit: the method's
    own random draws (RR-ClArC's signs, stochastic ISNet's classes) continue where they stopped. The
    short phase of a sweep (``sweep_epochs``) relies on it."""
    from model_training.corrections.run import run_correction

    _, ckpt = tiny
    common = {"method": method, "freeze": False, "batch_size": 16, "max_clean_drop": 1.0, **options}
    full_dir, _ = run_correction(_config(tmp_path, ckpt, config_name="full", num_epochs=2, **common))
    run_correction(_config(tmp_path, ckpt, config_name="continued", num_epochs=1, **common))
    continued_dir, metrics = run_correction(_config(tmp_path, ckpt, config_name="continued", num_epochs=2, **common),
                                            overwrite=True, resume=True)
    assert len(metrics["history"]) == 2
    full, continued = (torch.load(d / "checkpoints" / "last.pt", weights_only=True)["model_state_dict"]
                       for d in (full_dir, continued_dir))
    assert all(torch.equal(full[key], continued[key]) for key in full)


def test_the_runs_of_a_sweep_tune_isnet_and_read_cav_features_once(tiny, tmp_path, monkeypatch):
    """C1/C2 and the CAV's training features depend on the model and the data, not on the strength: a
    second run of a sweep reuses them exactly (the same numbers as computed afresh); other weights, or
    another layer, compute them anew."""
    from model_training.corrections import cavs, isnet
    from model_training.corrections.shared import forget

    splits, ckpt = tiny
    calls = {"tune": 0, "features": 0}
    tune, features = isnet.ISNet._tune, cavs.pooled_activations
    monkeypatch.setattr(isnet.ISNet, "_tune", lambda *a, **k: calls.__setitem__("tune", calls["tune"] + 1) or tune(*a, **k))
    monkeypatch.setattr(cavs, "pooled_activations",
                        lambda *a, **k: calls.__setitem__("features", calls["features"] + 1) or features(*a, **k))

    def prepare(method, model, **options):
        config = _config(tmp_path, ckpt, method=method, config_name=method, **options)
        correction = get_correction_method(method)(config)
        ctx = build_context(config, model, splits, torch.device("cpu"))
        correction.prepare(ctx)
        return correction, ctx

    original = load_corrected_model(ckpt)
    first, _ = prepare("ISNet", original, A=1.0, variant="stochastic")
    second, _ = prepare("ISNet", load_corrected_model(ckpt), A=10.0, variant="stochastic")
    assert calls["tune"] == 1 and first.bounds == second.bounds
    assert torch.equal(first.generator.get_state(), second.generator.get_state())  # the draws while tuning
    forget()
    fresh, _ = prepare("ISNet", load_corrected_model(ckpt), A=10.0, variant="stochastic")
    assert calls["tune"] == 2 and fresh.bounds == first.bounds
    other = load_corrected_model(ckpt)
    with torch.no_grad():
        other.classifier[-1].bias.add_(1.0)
    prepare("ISNet", other, A=1.0, variant="stochastic")
    assert calls["tune"] == 3

    _, rr = prepare("RRClarc", load_corrected_model(ckpt), lamb=10.0)
    _, projection = prepare("PClarc", load_corrected_model(ckpt))
    assert calls["features"] == 1
    assert np.array_equal(np.asarray(rr.extras["train_features"]), np.asarray(projection.extras["train_features"]))
    prepare("PClarc", load_corrected_model(ckpt), layer_name="features.2")
    assert calls["features"] == 2
