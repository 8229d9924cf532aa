"""Ranking metrics agree with scikit-learn / scipy, including ties."""
import numpy as np
import pytest
from scipy.stats import kendalltau
from sklearn.metrics import average_precision_score, roc_auc_score

from utils.bias.ranking import auroc, average_precision, kendall_tau, ranking_metrics, roc_curve_points

HAND_LABELS = [1, 0, 1, 1, 0, 0, 1, 0]
HAND_SCORES = [0.9, 0.8, 0.8, 0.5, 0.3, 0.3, 0.1, 0.0]  # ties across and within classes


def test_hand_made_example():
    # by hand: pairs (pos, neg) ordered correctly: 0.9 beats 4, 0.8 beats 3 + ties 1, 0.5 beats 3, 0.1 beats 1
    assert auroc(HAND_LABELS, HAND_SCORES) == pytest.approx((4 + 3.5 + 3 + 1) / 16)
    assert auroc(HAND_LABELS, HAND_SCORES) == pytest.approx(roc_auc_score(HAND_LABELS, HAND_SCORES))
    assert average_precision(HAND_LABELS, HAND_SCORES) == pytest.approx(
        average_precision_score(HAND_LABELS, HAND_SCORES))
    assert kendall_tau(HAND_LABELS, HAND_SCORES) == pytest.approx(kendalltau(HAND_SCORES, HAND_LABELS).statistic)


@pytest.mark.parametrize("seed", range(5))
def test_random_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(200) < 0.2
    scores = np.round(rng.normal(size=200) + labels, 1)  # rounding makes ties
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert average_precision(labels, scores) == pytest.approx(average_precision_score(labels, scores))


def test_degenerate_and_curve():
    assert np.isnan(auroc([1, 1], [0.1, 0.2]))
    assert np.isnan(average_precision([0, 0], [0.1, 0.2]))
    metrics = ranking_metrics([0, 1, 1], [0.0, 1.0, 2.0])
    assert metrics["auroc"] == 1.0 and metrics["ap"] == 1.0 and metrics["n_artifact"] == 2
    fpr, tpr = roc_curve_points([0, 1, 1], [0.0, 1.0, 2.0])
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1
