"""Paired statistics for comparing two models on the *same* test samples.

The mitigation comparison evaluates every correction on one fixed test split, so the models'
results are paired: McNemar's test compares per-sample correctness (accuracy) and DeLong's test
compares two correlated AUROCs. Both use only the discordant / per-sample information, which is
far more powerful than treating the two results as independent. ``mean_sd`` and
``format_mean_sd`` summarise a metric over repeated runs (seeds).
"""
import math

import numpy as np
from scipy import stats

# Below this many discordant pairs the chi-square approximation to McNemar's statistic is poor
# (its expected cell counts are too small), so the exact binomial test is used instead.
MCNEMAR_EXACT_BELOW = 25


def mcnemar(correct_a, correct_b):
    """McNemar's test of equal accuracy for two classifiers on the same samples.

    Only the discordant samples carry information: ``n01`` (A right, B wrong) and ``n10``
    (A wrong, B right). Under the null hypothesis of equal accuracy each discordant sample is
    equally likely to fall either way, so ``n01 ~ Binomial(n01 + n10, 1/2)``.

    Rule: when ``n01 + n10 < 25`` the exact two-sided binomial test is used
    (``method="exact"``, ``statistic=min(n01, n10)``), because the chi-square approximation is
    unreliable for so few discordant pairs; otherwise the chi-square test with continuity
    correction, ``(|n01 - n10| - 1)^2 / (n01 + n10)`` on 1 degree of freedom
    (``method="chi2"``), which is then accurate and cheap. With no discordant pairs the models
    cannot be told apart: ``p_value=1.0``.

    Parameters
    ----------
    correct_a, correct_b : array_like of bool, shape (n,)
        Whether model A / model B classified each sample correctly, in the same sample order.

    Returns
    -------
    dict
        ``n01``, ``n10`` (int), ``statistic`` (float), ``p_value`` (float), ``method``
        (``"exact"`` or ``"chi2"``).
    """
    a = _as_bool(correct_a, "correct_a")
    b = _as_bool(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(f"correct_a and correct_b must cover the same samples, got shapes {a.shape} and {b.shape}")
    n01 = int(np.sum(a & ~b))
    n10 = int(np.sum(~a & b))
    discordant = n01 + n10
    if discordant == 0:
        return {"n01": 0, "n10": 0, "statistic": 0.0, "p_value": 1.0, "method": "exact"}
    if discordant < MCNEMAR_EXACT_BELOW:
        p_value = stats.binomtest(n01, discordant, 0.5).pvalue
        # min(n01, n10) keeps the statistic symmetric in A and B (the p-value already is).
        return {"n01": n01, "n10": n10, "statistic": float(min(n01, n10)),
                "p_value": float(min(1.0, p_value)), "method": "exact"}
    statistic = (abs(n01 - n10) - 1) ** 2 / discordant
    return {"n01": n01, "n10": n10, "statistic": float(statistic),
            "p_value": float(stats.chi2.sf(statistic, df=1)), "method": "chi2"}


def delong_auc_variance(y_true, scores):
    """AUROC and its DeLong variance estimate for one model.

    Parameters
    ----------
    y_true : array_like, shape (n,)
        Binary labels (bool or 0/1); 1 is the positive class.
    scores : array_like, shape (n,)
        Scores, higher meaning more likely positive.

    Returns
    -------
    tuple of float
        ``(auc, variance)``; both ``nan`` when a class is missing, and the variance is ``nan``
        when a class has a single sample (its sample variance is undefined).
    """
    positive = _as_labels(y_true)
    s = _as_scores(scores, len(positive), "scores")[None, :]
    aucs, v10, v01 = _structural_components(positive, s)
    if v10 is None:
        return float("nan"), float("nan")
    return float(aucs[0]), float(_component_variance(v10[0], v01[0]))


def delong(y_true, scores_a, scores_b):
    """DeLong's test for the difference of two correlated AUROCs on the same samples.

    DeLong, DeLong & Clarke-Pearson (1988), with the midrank computation of Sun & Xu (2014),
    O(n log n). With ``m`` positives ``X`` and ``n`` negatives ``Y`` and the Mann-Whitney kernel
    ``psi(x, y) = 1 if x > y, 1/2 if x == y, 0 otherwise``, each model has the placement values
    ``V10_i = mean_j psi(X_i, Y_j)`` and ``V01_j = mean_i psi(X_i, Y_j)``; the AUROC is their
    mean. The variance of ``auc_a - auc_b`` is ``var(V10_a - V10_b) / m + var(V01_a - V01_b) / n``
    (sample variances, ddof=1), which equals ``var_a + var_b - 2 cov_ab``; ``z`` is the
    difference over its standard error and the p-value is two-sided from the normal distribution.

    Degenerate cases: with a class missing (or a single sample in a class, where the variance is
    undefined) everything but the AUROCs that exist is ``nan`` and ``p_value`` is ``nan``. With
    zero variance (e.g. identical scores) ``p_value`` is 1.0 if the difference is 0 and 0.0
    otherwise, with ``z`` 0 or +-inf accordingly.

    Parameters
    ----------
    y_true : array_like, shape (n,)
        Binary labels (bool or 0/1); 1 is the positive class.
    scores_a, scores_b : array_like, shape (n,)
        Scores of model A and model B on the same samples, higher meaning more likely positive.

    Returns
    -------
    dict
        ``auc_a``, ``auc_b``, ``difference`` (``auc_a - auc_b``), ``variance`` (of the
        difference), ``z``, ``p_value`` (all float).
    """
    positive = _as_labels(y_true)
    s = np.stack([_as_scores(scores_a, len(positive), "scores_a"),
                  _as_scores(scores_b, len(positive), "scores_b")])
    aucs, v10, v01 = _structural_components(positive, s)
    nan = float("nan")
    if v10 is None:
        return {"auc_a": nan, "auc_b": nan, "difference": nan, "variance": nan, "z": nan, "p_value": nan}
    difference = float(aucs[0] - aucs[1])
    # Variance of the difference from the differenced components: same value as L S L^T with
    # L = (1, -1), but exactly 0 (not a tiny negative round-off) when the models coincide.
    variance = float(_component_variance(v10[0] - v10[1], v01[0] - v01[1]))
    out = {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "difference": difference, "variance": variance}
    if math.isnan(variance):
        return {**out, "z": nan, "p_value": nan}
    if variance <= 0.0:
        if difference == 0.0:
            return {**out, "z": 0.0, "p_value": 1.0}
        return {**out, "z": math.copysign(math.inf, difference), "p_value": 0.0}
    z = difference / math.sqrt(variance)
    return {**out, "z": float(z), "p_value": float(2.0 * stats.norm.sf(abs(z)))}


def paired_tests(labels, logits_a, logits_b, auroc_class):
    """Model A vs model B on the same samples: McNemar on per-sample correctness and DeLong on the
    one-vs-rest AUROC of class ``auroc_class`` (the class the artifact is evidence for).

    Single-label (``labels`` (n,)): correctness of the argmax, softmax scores.

    Multi-label (multi-hot ``labels`` (n, K)): both tests are about label ``auroc_class`` alone, a
    yes/no task of its own: correct where its sigmoid is on the right side of 0.5, scored by its
    logit (the AUROC of its sigmoid, without ties where the sigmoid saturates). McNemar over all
    n*K label decisions would count each sample K times, while its decisions are not independent;
    the accuracy entry then also names its ``class``.

    Returns ``{"accuracy": mcnemar(...) + {"a", "b"}, "auroc": delong(...) + {"class"}}``.
    """
    labels = np.asarray(labels)
    logits_a, logits_b = np.asarray(logits_a, dtype=np.float64), np.asarray(logits_b, dtype=np.float64)
    if labels.ndim == 2:
        positive = labels[:, auroc_class] > 0
        score_a, score_b = logits_a[:, auroc_class], logits_b[:, auroc_class]
        correct_a, correct_b = (score_a > 0) == positive, (score_b > 0) == positive  # sigmoid > 0.5
        which = {"class": int(auroc_class)}
    else:
        positive = labels == auroc_class
        score_a, score_b = _softmax(logits_a)[:, auroc_class], _softmax(logits_b)[:, auroc_class]
        correct_a, correct_b = logits_a.argmax(1) == labels, logits_b.argmax(1) == labels
        which = {}
    accuracy = {**mcnemar(correct_a, correct_b), "a": float(correct_a.mean()), "b": float(correct_b.mean()), **which}
    if positive.all() or not positive.any():
        auroc = {"auc_a": float("nan"), "auc_b": float("nan"), "difference": float("nan"), "variance": float("nan"),
                 "z": float("nan"), "p_value": float("nan")}
    else:
        auroc = delong(positive, score_a, score_b)
    return {"accuracy": accuracy, "auroc": {**auroc, "class": int(auroc_class)}}


def _softmax(logits):
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


def mean_sd(values):
    """Mean, sample standard deviation (ddof=1) and count of ``values``, ignoring NaN.

    Returns
    -------
    tuple
        ``(mean, sd, n)``: ``mean`` is ``nan`` when ``n == 0`` and ``sd`` is ``nan`` when
        ``n < 2`` (one run says nothing about the spread).
    """
    v = np.asarray(values, dtype=float).ravel()
    v = v[~np.isnan(v)]
    n = int(v.size)
    mean = float(v.mean()) if n else float("nan")
    sd = float(v.std(ddof=1)) if n > 1 else float("nan")
    return mean, sd, n


def format_mean_sd(values, digits=3):
    """``"0.812 ± 0.014"`` for several values, ``"0.812"`` for one, ``"—"`` for none (NaN ignored)."""
    mean, sd, n = mean_sd(values)
    if n == 0:
        return "—"
    if n == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def _structural_components(positive, scores):
    """AUROCs and DeLong placement values of each row of ``scores`` (k, n).

    Returns ``(aucs, v10, v01)`` with ``v10`` (k, m) over positives and ``v01`` (k, n) over
    negatives, or ``(nan aucs, None, None)`` when a class is missing.
    """
    x, y = scores[:, positive], scores[:, ~positive]
    m, n = x.shape[1], y.shape[1]
    if m == 0 or n == 0:
        return np.full(len(scores), np.nan), None, None
    # Sun & Xu: a positive's midrank among all samples minus its midrank among the positives is
    # the number of negatives below it (ties counted 1/2), i.e. n * V10; likewise for negatives.
    # Midranks ("average" ranks) give the 1/2 for ties without any pairwise comparison.
    rank_all = stats.rankdata(np.concatenate([x, y], axis=1), method="average", axis=1)
    rank_x = stats.rankdata(x, method="average", axis=1)
    rank_y = stats.rankdata(y, method="average", axis=1)
    v10 = (rank_all[:, :m] - rank_x) / n
    v01 = 1.0 - (rank_all[:, m:] - rank_y) / m
    return v10.mean(axis=1), v10, v01


def _component_variance(v10, v01):
    m, n = len(v10), len(v01)
    if m < 2 or n < 2:
        return float("nan")
    return np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n


def _as_bool(values, name):
    v = np.asarray(values)
    if v.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {v.shape}")
    if v.dtype != bool:
        if v.size and not np.isin(v, (0, 1)).all():
            raise ValueError(f"{name} must hold booleans (or 0/1)")
        v = v.astype(bool)
    return v


def _as_labels(y_true):
    return _as_bool(y_true, "y_true")


def _as_scores(scores, n, name):
    s = np.asarray(scores, dtype=float)
    if s.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) like y_true, got {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} must be finite")  # ranks of NaN are meaningless
    return s
