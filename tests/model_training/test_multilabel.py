"""Mitigation and re-evaluation on multi-hot labels (PTB-XL; CheXpert with ``target: all``).

The embedded data sets are single-label, so a tiny multi-label set is made here from synth_derm:
labels (benign, melanoma, follow_up), some samples with none (no finding), band-aids on benign
samples. Every correction method trains one short epoch and every re-evaluation step runs on it,
giving finite numbers of the right shape; the explained-class convention of ``utils.labels`` is
checked on its own (sum of the positive labels' logits, the biased class without one).
"""
import math
import zlib

import numpy as np
import pytest
import torch
import yaml

from datasets import DataSplits, get_dataset
from datasets.base import BaseDataset
from datasets.with_artifacts import ArtifactDataset
from model_training.corrections.isnet import VARIANTS
from models import get_model
from utils.checkpoint import save_checkpoint
from utils.config import load_config
from utils.config.mitigation import MitigationConfig
from utils.evaluation.stats import paired_tests
from utils.labels import biased_class_index, explained_labels, explained_output, label_names
from utils.lrp.attribution import get_attributor

CLASSES = ("benign", "melanoma", "follow_up")
BIASED = 0  # band-aids are inserted on benign samples only


class MultiHotSplit(BaseDataset):
    """A split of images with multi-hot labels: its class, a random second label, and no label at all
    for about a fifth of the samples (drawn once from a fixed seed)."""

    def __init__(self, base):
        rng = np.random.default_rng([len(base), zlib.crc32(base.split.encode())])
        labels = np.zeros((len(base), len(CLASSES)), dtype=np.float32)
        labels[np.arange(len(base)), base.labels] = 1
        labels[:, 2] = rng.random(len(base)) < 0.4
        labels[rng.random(len(base)) < 0.2] = 0
        super().__init__(base.split, CLASSES, base.sample_ids, labels, base.mean, base.std, base.augment,
                         multi_label=True)
        self.base = base

    def load_raw(self, idx):
        return self.base.load_raw(idx)

    def get_foreground_mask(self, idx):
        return self.base.get_foreground_mask(idx)


@pytest.fixture(scope="module")
def multilabel(tmp_path_factory):
    """Tiny multi-label splits and an untrained tiny_vgg checkpoint with one output per label."""
    single = get_dataset("synth_derm", img_size=32, seed=0,
                         dataset_options={"n_train": 32, "n_val": 12, "n_test": 12}, artifact="band_aid")
    wrapped = {name: ArtifactDataset(MultiHotSplit(split.base), {"band_aid": {BIASED: 0.6}}, seed=0,
                                     target="band_aid") for name, split in single.items()}
    splits = DataSplits(wrapped["train"], wrapped["val"], wrapped["test"])
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("multilabel")
    ckpt = root / "model.pt"
    model = get_model("tiny_vgg", len(CLASSES))
    # every logit rises with the (non-negative) features, as a trained model's for the labels it predicts:
    # the explained outputs then have positive relevance, whose share artifact relevance measures
    model.classifier[-1].weight.data.abs_()
    save_checkpoint(ckpt, model, "tiny_vgg", len(CLASSES))
    return splits, ckpt, root


def test_the_tiny_set_is_multi_label_with_samples_without_a_label(multilabel):
    splits, _, _ = multilabel
    train = splits.train
    assert train.multi_label and train.labels.shape == (32, 3)
    assert (train.labels.sum(1) == 0).any() and (train.labels.sum(1) > 1).any()
    assert (splits.test.labels[:6].sum(1) == 0).any()  # the evaluation explains one by the biased class
    assert torch.as_tensor(train[0][1]).shape == (3,)
    assert biased_class_index(train.labels, train.artifact_labels("band_aid"), 3) == BIASED


# --- the convention (utils.labels) -----------------------------------------------------------------
def test_single_label_targets_are_unchanged():
    logits = torch.randn(5, 3)
    y = torch.tensor([0, 2, 1, 1, 0])
    assert explained_labels(y, fallback=1) is y
    assert torch.equal(explained_output(logits, y), logits.gather(1, y[:, None])[:, 0])
    assert label_names(2, CLASSES) == "follow_up"


def test_multi_hot_labels_explain_the_sum_of_their_logits_or_the_biased_class():
    logits = torch.randn(3, 3)
    y = torch.tensor([[1.0, 0, 1], [0, 0, 0], [0, 1, 0]])
    weights = explained_labels(y, fallback=BIASED)
    assert torch.equal(weights, torch.tensor([[1.0, 0, 1], [1, 0, 0], [0, 1, 0]]))
    expected = torch.stack([logits[0, 0] + logits[0, 2], logits[1, BIASED], logits[2, 1]])
    assert torch.allclose(explained_output(logits, y, BIASED), expected)
    with pytest.raises(ValueError, match="fallback"):
        explained_output(logits, y)
    assert label_names(y[0], CLASSES) == "benign+follow_up" and label_names(y[1], CLASSES) == "none"


def test_biased_class_is_the_highest_artifact_rate_among_a_labels_positives():
    labels = np.array([[1, 0], [1, 1], [0, 1], [0, 1], [0, 0]])
    has = np.array([True, False, True, True, True])
    # label 0: 1 of 2 positives; label 1: 2 of 3; a sample without a label counts for no class
    assert biased_class_index(labels, has, 2) == 1
    assert biased_class_index(np.array([0, 0, 1, 1]), np.array([True, True, False, True]), 2) == 0


@pytest.mark.parametrize("backend", ["fast", "zennit"])
def test_a_multi_hot_heatmap_is_the_sum_of_the_per_label_heatmaps(multilabel, backend):
    splits, ckpt, _ = multilabel
    model = get_model("tiny_vgg", 3, ckpt_path=ckpt, img_size=32).eval()
    x = torch.stack([splits.test.normalize(splits.test.load_raw(i)) for i in range(2)])
    attributor = get_attributor(model, backend=backend)
    both = attributor.attribute(x, targets=torch.tensor([[1.0, 0, 1], [0, 1, 1]])).heatmap
    per_label = [attributor.attribute(x, targets=torch.tensor([a, b])).heatmap for a, b in ((0, 1), (2, 2))]
    assert torch.allclose(both, per_label[0] + per_label[1], atol=1e-5)


def test_the_differentiable_composite_heatmap_takes_multi_hot_rows(multilabel):
    splits, ckpt, _ = multilabel
    model = get_model("tiny_vgg", 3, ckpt_path=ckpt, img_size=32).eval()
    x = torch.stack([splits.test.normalize(splits.test.load_raw(i)) for i in range(2)])
    fast = get_attributor(model, backend="fast")
    y = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    assert torch.allclose(fast.differentiable_heatmap(x, y), fast.attribute(x, targets=y).heatmap, atol=1e-6)


def test_isnet_selective_explains_the_labels_log_odds():
    logits = torch.randn(3, 3)
    y = torch.tensor([[1.0, 1, 0], [0, 0, 0], [0, 0, 1]])
    (label,) = VARIANTS["selective"](logits, y, {"selective_class": "label", "fallback": 2})
    assert torch.allclose(label, torch.stack([logits[0, 0] + logits[0, 1], logits[1, 2], logits[2, 2]]))
    (lowest,) = VARIANTS["selective"](logits, y, {"selective_class": "lowest_logit"})
    assert torch.equal(lowest, logits.min(1).values)  # a sigmoid's eta is the logit itself


def test_paired_tests_of_a_multi_label_task_are_about_the_biased_label():
    rng = np.random.default_rng(0)
    labels = (rng.random((40, 3)) < 0.5).astype(float)
    a, b = rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) + labels
    result = paired_tests(labels, a, b, 1)
    assert result["accuracy"]["class"] == 1 and result["auroc"]["class"] == 1
    assert result["accuracy"]["b"] == pytest.approx(np.mean((b[:, 1] > 0) == (labels[:, 1] > 0)))
    assert 0 <= result["accuracy"]["p_value"] <= 1 and 0 <= result["auroc"]["p_value"] <= 1
    assert result["auroc"]["auc_b"] > result["auroc"]["auc_a"]


# --- every method corrects, every evaluation step measures ----------------------------------------
METHODS = [("Vanilla", {}),
           ("RRR", {"rrr_explanation": "gradient", "rrr_penalty": "squared"}),
           ("RRR", {"rrr_explanation": "lrp", "rrr_penalty": "share"}),
           ("RRR", {"rrr_explanation": "lrp_composite", "rrr_penalty": "positive_share"}),
           ("RRClarc", {"criterion": "all_logits_random"}), ("RRClarc", {"criterion": "logprobs"}),
           ("RRClarc", {"criterion": "target"}),
           ("PClarc", {}), ("ReactivePClarc", {}),
           ("ISNet", {"variant": "selective", "selective_class": "label"}),
           ("ISNet", {"variant": "original", "C1": 1.0, "C2": 10.0})]


def _config(root, method, options):
    name = "_".join([method, *map(str, options.values())])
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "dataset_name": "synth_derm", "img_size": 32, "dataset_options": {"n_train": 32, "n_val": 12, "n_test": 12},
        "model_name": "tiny_vgg", "artifact": "band_aid", "ckpt_path": str(root / "model.pt"),
        "layer_name": "features.6",
        # a small step: one epoch of BCE on a few samples at lr 1e-3 drives every logit negative, and the
        # heatmap of a negative output has no positive relevance (artifact relevance NaN, as documented)
        "loss": "bce", "num_epochs": 1, "lr": 1e-5, "batch_size": 16, "tune_epochs": 0,
        "output_dir": str(root / "out"), "eval_splits": ["test"], "eval_max_samples": 6, "n_heatmaps": 1,
        "method": method, **options}))
    return load_config(path, MitigationConfig)


def _finite_or_undefined(value, labels):
    """An AUROC is defined where the label has positives and negatives: then it must be finite."""
    labels = np.asarray(labels)
    return math.isfinite(value) or labels.min() == labels.max()


@pytest.mark.parametrize("method,options", METHODS, ids=["-".join([m, *map(str, o.values())]) for m, o in METHODS])
def test_correction_and_evaluation_on_multi_hot_labels(multilabel, monkeypatch, method, options):
    from model_training.corrections import run
    from utils.evaluation import steps

    splits, _, root = multilabel
    monkeypatch.setattr(run, "correction_splits", lambda config: splits)
    monkeypatch.setattr(steps, "correction_splits", lambda config: splits)
    config = _config(root, method, options)
    torch.manual_seed(0)
    _, metrics = run.run_correction(config)
    assert all(math.isfinite(epoch["train_loss"]) for epoch in metrics["history"])
    assert len(metrics["history"]) == (0 if method in ("PClarc", "ReactivePClarc") else 1)

    subsets = steps.evaluate_by_subset(config)
    test_labels = splits.test.labels
    for model in ("original", "corrected"):
        assert set(subsets[model]["test"]) == {"clean", "attacked", "ch"}
        for m in subsets[model]["test"].values():
            assert m["n"] == 12 * 3  # every label decision of every sample
            assert math.isfinite(m["accuracy"]) and math.isfinite(m["macro_f1"])
            assert list(m["per_class_auroc"]) == list(CLASSES)
            assert all(_finite_or_undefined(v, test_labels[:, k]) for k, v in enumerate(m["per_class_auroc"].values()))
    for t in subsets["paired_tests"]["test"].values():
        assert t["accuracy"]["class"] == BIASED and t["auroc"]["class"] == BIASED
        assert 0 <= t["accuracy"]["p_value"] <= 1 and math.isfinite(t["auroc"]["auc_b"])
    assert {f"accuracy {BIASED} original", "DeLong p"} <= set(steps.paired_rows(subsets)[0])

    relevance = steps.compute_artifact_relevance(config)
    for model in ("original", "corrected"):
        assert len(relevance[model]["per_sample"]) == 6 and relevance[model]["n"] > 0
        assert 0.0 <= relevance[model]["artifact_relevance"] <= 1.0
        assert math.isfinite(relevance[model]["excess"])

    tcav = steps.measure_tcav(config)
    assert tcav["biased_class"] == CLASSES[BIASED] and tcav["n"] == 6
    for scores in (tcav["original"]["original_cav"], tcav["corrected"]["original_cav"], tcav["corrected"]["refit_cav"]):
        assert list(scores) == list(CLASSES)
        assert all(0 <= s["tcav"] <= 1 and math.isfinite(s["sensitivity"]) for s in scores.values())

    assert steps.plot_heatmaps(config).is_file()
