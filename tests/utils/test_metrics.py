"""AUROC and macro-F1 of ``utils.metrics`` are scikit-learn's definitions, computed with numpy."""
import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from utils.metrics import auroc, classification_metrics, macro_f1


@pytest.mark.parametrize("seed", range(5))
def test_auroc_is_roc_auc_score_with_ties(seed):
    rng = np.random.default_rng(seed)
    positive = rng.random(60) < 0.3
    scores = np.round(rng.random(60) + 0.3 * positive, 1)  # rounded: many ties
    assert auroc(positive, scores) == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)
    assert math.isnan(auroc(np.zeros(5, bool), scores[:5]))  # one class only: undefined


def test_auroc_hand_values():
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert auroc([0, 1], [0.5, 0.5]) == 0.5


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_is_f1_score_single_and_multi_label(seed):
    rng = np.random.default_rng(seed)
    y, pred = rng.integers(0, 4, 40), rng.integers(0, 3, 40)  # class 3 is never predicted
    classes = np.arange(5)  # class 4 neither present nor predicted: scores 0
    assert macro_f1(y[:, None] == classes, pred[:, None] == classes) == pytest.approx(
        f1_score(y, pred, average="macro", labels=list(classes), zero_division=0))
    truth, predicted = rng.random((40, 3)) < 0.4, rng.random((40, 3)) < 0.3
    predicted[:, 2] = False
    assert macro_f1(truth, predicted) == pytest.approx(f1_score(truth, predicted, average="macro", zero_division=0))


def test_classification_metrics_use_them():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(30, 3)), rng.integers(0, 3, 30)
    metrics = classification_metrics(logits, labels, ["a", "b", "c"])
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert metrics["per_class_auroc"]["b"] == pytest.approx(roc_auc_score(labels == 1, probs[:, 1]))
    assert metrics["macro_f1"] == pytest.approx(f1_score(labels, probs.argmax(1), average="macro", zero_division=0))
