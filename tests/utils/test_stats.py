import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from utils.evaluation.stats import delong, delong_auc_variance, format_mean_sd, mcnemar, mean_sd


def _paired(n01, n10, n11=0, n00=0):
    """Correctness arrays with the given cell counts (a right/b wrong = n01, a wrong/b right = n10)."""
    a = [True] * n01 + [False] * n10 + [True] * n11 + [False] * n00
    b = [False] * n01 + [True] * n10 + [True] * n11 + [False] * n00
    return np.array(a), np.array(b)


def test_mcnemar_small_discordant_count_uses_the_exact_binomial_test():
    a, b = _paired(10, 2, n11=30, n00=5)
    result = mcnemar(a, b)
    # Two-sided exact p: twice the lower tail of Binomial(12, 1/2) at min(n01, n10) = 2.
    expected = 2 * sum(math.comb(12, k) for k in range(3)) / 2 ** 12
    assert (result["n01"], result["n10"], result["method"]) == (10, 2, "exact")
    assert result["p_value"] == pytest.approx(expected, rel=1e-12)
    assert result["statistic"] == 2


def test_mcnemar_large_discordant_count_uses_chi_square_with_continuity_correction():
    a, b = _paired(40, 20, n11=100, n00=7)
    result = mcnemar(a, b)
    statistic = (abs(40 - 20) - 1) ** 2 / 60
    assert result["method"] == "chi2"
    assert result["statistic"] == pytest.approx(statistic)
    assert result["p_value"] == pytest.approx(stats.chi2.sf(statistic, 1))
    # Same p from the normal tail: chi2 with 1 dof is a squared standard normal.
    assert result["p_value"] == pytest.approx(2 * stats.norm.sf(math.sqrt(statistic)))


def test_mcnemar_switches_at_25_discordant_pairs():
    assert mcnemar(*_paired(20, 4))["method"] == "exact"
    assert mcnemar(*_paired(20, 5))["method"] == "chi2"


def test_mcnemar_is_symmetric_and_ignores_concordant_samples():
    rng = np.random.default_rng(0)
    a, b = rng.random(80) < 0.8, rng.random(80) < 0.6
    ab, ba = mcnemar(a, b), mcnemar(b, a)
    assert (ab["n01"], ab["n10"]) == (ba["n10"], ba["n01"])
    assert ab["p_value"] == pytest.approx(ba["p_value"])
    assert ab["statistic"] == pytest.approx(ba["statistic"])
    more_concordant = mcnemar(np.r_[a, [True] * 50, [False] * 50], np.r_[b, [True] * 50, [False] * 50])
    assert more_concordant["p_value"] == pytest.approx(ab["p_value"])


def test_mcnemar_without_discordant_pairs_has_p_one():
    a, b = _paired(0, 0, n11=10, n00=3)
    result = mcnemar(a, b)
    assert (result["n01"], result["n10"], result["p_value"]) == (0, 0, 1.0)


def test_mcnemar_rejects_unpaired_arrays():
    with pytest.raises(ValueError):
        mcnemar([True, False], [True])


def _psi(x, y):
    return 1.0 if x > y else 0.5 if x == y else 0.0


def _placements(y_true, scores):
    """V10 over positives and V01 over negatives by the definition (double loop)."""
    pos = [s for s, t in zip(scores, y_true) if t]
    neg = [s for s, t in zip(scores, y_true) if not t]
    v10 = [sum(_psi(x, y) for y in neg) / len(neg) for x in pos]
    v01 = [sum(_psi(x, y) for x in pos) / len(pos) for y in neg]
    return np.array(v10), np.array(v01)


def _reference_covariance(y_true, scores_a, scores_b):
    """DeLong covariance of two AUROCs from the placement values: cov(V10)/m + cov(V01)/n."""
    a10, a01 = _placements(y_true, scores_a)
    b10, b01 = _placements(y_true, scores_b)
    m, n = len(a10), len(a01)
    cov10 = sum((a10[i] - a10.mean()) * (b10[i] - b10.mean()) for i in range(m)) / (m - 1)
    cov01 = sum((a01[j] - a01.mean()) * (b01[j] - b01.mean()) for j in range(n)) / (n - 1)
    return cov10 / m + cov01 / n


# 4 positives, 5 negatives, with ties within and across classes.
Y_SMALL = np.array([1, 0, 1, 0, 0, 1, 0, 1, 0])
S_SMALL = np.array([0.9, 0.3, 0.5, 0.5, 0.1, 0.7, 0.7, 0.3, 0.2])
S_SMALL_B = np.array([0.6, 0.4, 0.8, 0.2, 0.4, 0.6, 0.5, 0.1, 0.3])


def test_single_auroc_and_variance_match_the_placement_value_definition():
    auc, variance = delong_auc_variance(Y_SMALL, S_SMALL)
    v10, v01 = _placements(Y_SMALL, S_SMALL)
    assert auc == pytest.approx(roc_auc_score(Y_SMALL, S_SMALL))
    assert auc == pytest.approx(v10.mean())
    expected = _reference_covariance(Y_SMALL, S_SMALL, S_SMALL)
    assert expected > 0
    assert variance == pytest.approx(expected, rel=1e-12)


def test_auroc_matches_sklearn_on_random_scores_with_ties():
    rng = np.random.default_rng(1)
    y = rng.random(150) < 0.3
    s_a = np.round(rng.normal(size=150) + y, 1)  # rounding creates many ties
    s_b = rng.integers(0, 4, size=150).astype(float)
    result = delong(y, s_a, s_b)
    assert result["auc_a"] == pytest.approx(roc_auc_score(y, s_a))
    assert result["auc_b"] == pytest.approx(roc_auc_score(y, s_b))
    assert delong_auc_variance(y, s_a)[0] == pytest.approx(roc_auc_score(y, s_a))


def test_variance_of_the_difference_is_var_a_plus_var_b_minus_twice_the_covariance():
    result = delong(Y_SMALL, S_SMALL, S_SMALL_B)
    var_a = _reference_covariance(Y_SMALL, S_SMALL, S_SMALL)
    var_b = _reference_covariance(Y_SMALL, S_SMALL_B, S_SMALL_B)
    cov = _reference_covariance(Y_SMALL, S_SMALL, S_SMALL_B)
    expected = var_a + var_b - 2 * cov
    assert result["variance"] == pytest.approx(expected, rel=1e-12)
    assert result["difference"] == pytest.approx(result["auc_a"] - result["auc_b"])
    assert result["z"] == pytest.approx(result["difference"] / math.sqrt(expected))
    assert result["p_value"] == pytest.approx(2 * stats.norm.sf(abs(result["z"])))


def test_identical_models_have_difference_zero_and_p_one():
    result = delong(Y_SMALL, S_SMALL, S_SMALL.copy())
    assert (result["difference"], result["variance"], result["z"], result["p_value"]) == (0.0, 0.0, 0.0, 1.0)


def test_a_clearly_better_model_is_significant_and_the_test_is_antisymmetric():
    rng = np.random.default_rng(2)
    y = rng.random(200) < 0.5
    good = y * 2.0 + rng.normal(size=200)
    weak = y * 0.3 + rng.normal(size=200)
    ab, ba = delong(y, good, weak), delong(y, weak, good)
    assert ab["auc_a"] > ab["auc_b"] and ab["p_value"] < 0.01
    assert ab["variance"] == pytest.approx(_reference_covariance(y, good, good) + _reference_covariance(y, weak, weak)
                                           - 2 * _reference_covariance(y, good, weak))
    assert ba["difference"] == pytest.approx(-ab["difference"])
    assert ba["z"] == pytest.approx(-ab["z"])
    assert ba["p_value"] == pytest.approx(ab["p_value"])


def test_delong_degenerate_cases():
    one_class = delong([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    assert all(math.isnan(v) for v in one_class.values())
    assert all(math.isnan(v) for v in delong_auc_variance([0, 0], [0.1, 0.2]))
    # Both models perfectly separate the classes: every placement value is 1, variance 0.
    perfect = delong([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], [0.0, 0.3, 0.5, 0.6])
    assert (perfect["difference"], perfect["variance"], perfect["p_value"]) == (0.0, 0.0, 1.0)
    # Zero variance but a nonzero difference: a perfect model against a constant score, whose
    # placement values are all 1/2 (every pair tied), so the differenced components are constant.
    shifted = delong([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], [0.5, 0.5, 0.5, 0.5])
    assert shifted["variance"] == pytest.approx(0.0)
    assert shifted["difference"] > 0 and shifted["p_value"] == 0.0 and shifted["z"] == math.inf


def test_delong_rejects_non_binary_labels_and_mismatched_scores():
    with pytest.raises(ValueError):
        delong([0, 1, 2], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        delong([0, 1, 1], [0.1, 0.2], [0.1, 0.2, 0.3])


def test_mean_sd():
    mean, sd, n = mean_sd([0.80, 0.82, float("nan"), 0.84])
    assert (mean, n) == (pytest.approx(0.82), 3)
    assert sd == pytest.approx(0.02)
    mean, sd, n = mean_sd([0.5])
    assert (mean, n) == (0.5, 1) and math.isnan(sd)
    mean, sd, n = mean_sd([])
    assert n == 0 and math.isnan(mean) and math.isnan(sd)


def test_format_mean_sd():
    assert format_mean_sd([0.80, 0.82, 0.84]) == "0.820 ± 0.020"
    assert format_mean_sd([0.8123, float("nan")]) == "0.812"
    assert format_mean_sd([0.7, 0.9], digits=1) == "0.8 ± 0.1"
    assert format_mean_sd([float("nan")]) == "—"
    assert format_mean_sd([]) == "—"
