"""The linear SVM CAV picks C on a bounded subsample above ``SVM_CV_MAX_ROWS`` rows and is unchanged below.

The simulated annotation rounds refit the SVM CAV about 20 times on every sample; with the cross-validation
on all rows they grew as N^1.5. These tests pin the three promises of the bounded cross-validation: below
the threshold nothing changes, above it the grid sees at most ``cv_max_rows`` rows (counted, not timed),
and the direction still finds the planted concept as well as the full cross-validation's.
"""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from utils.bias.cav import SVM_C_GRID, SVM_CV_MAX_ROWS, _svm_cv_subsample, fit_cav


def _activations(n, c=32, seed=0, accepted_share=0.7):
    """Pooled-activation-like rows (a low-rank variation, little noise, ReLU) with a planted artifact
    on a few channels in 10% of them, and the labels of an annotation round: only the artifact rows
    ranked first along some direction are accepted, the others count as negatives. The accepted and
    the unaccepted artifact rows touch, which is what makes liblinear slow at large C."""
    rng = np.random.default_rng(seed)
    artifact = rng.random(n) < 0.1
    pattern = 3.0 * (rng.random(c) < 0.2)
    basis = 0.5 * rng.normal(size=(6, c))
    X = np.maximum(2.0 + rng.normal(size=(n, 6)) @ basis + 0.2 * rng.normal(size=(n, c))
                   + np.outer(artifact, pattern), 0.0)
    along = X @ rng.normal(size=c)
    accepted = artifact & (along > np.quantile(along[artifact], 1 - accepted_share))
    return X, artifact, accepted


def _old_svm_cav(X, y):
    """The SVM CAV as it was before the subsample (cross-validation on all rows), for comparison."""
    weight = np.where(y, 1.0 / y.sum(), 1.0 / (~y).sum())
    weight = weight * len(y) / weight.sum()
    best_c, best_score = SVM_C_GRID[len(SVM_C_GRID) // 2], -np.inf
    splitter = StratifiedKFold(3, shuffle=True, random_state=0)
    for c in SVM_C_GRID:
        scores = []
        for train, test in splitter.split(X, y):
            pred = LinearSVC(C=c, max_iter=5000).fit(X[train], y[train], sample_weight=weight[train]).predict(X[test])
            scores.append(0.5 * (pred[y[test]].mean() + (~pred[~y[test]]).mean()))
        if np.mean(scores) > best_score + 1e-12:
            best_c, best_score = c, float(np.mean(scores))
    model = LinearSVC(C=best_c, max_iter=5000).fit(X, y, sample_weight=weight)
    norm = np.linalg.norm(model.coef_[0])
    return model.coef_[0] / norm, model.intercept_[0] / norm, {"C": best_c, "cv_balanced_accuracy": best_score}


@pytest.fixture
def svm_fits(monkeypatch):
    """Rows and liblinear iterations of every LinearSVC fit made while the test runs."""
    fits, fit = [], LinearSVC.fit

    def counted(self, X, y, sample_weight=None):
        model = fit(self, X, y, sample_weight=sample_weight)
        fits.append((len(y), int(model.n_iter_)))
        return model

    monkeypatch.setattr(LinearSVC, "fit", counted)
    return fits


def test_demo_sized_fits_are_the_old_cross_validation_on_all_rows():
    # the demo fits its CAVs on 2,000 training samples: below the threshold, so its numbers stay
    assert SVM_CV_MAX_ROWS >= 2000
    X, _, accepted = _activations(600, seed=1)
    direction, bias, info = _old_svm_cav(X, accepted)
    for cv_max_rows in (SVM_CV_MAX_ROWS, len(X)):  # at the threshold itself too
        cav = fit_cav(X, accepted, "svm", cv_max_rows=cv_max_rows)
        assert np.array_equal(cav.direction, direction) and cav.bias == bias
        assert cav.info == info  # no subsample keys: the demo's cav_refined.json keeps its fields


def test_large_fits_cross_validate_on_at_most_cv_max_rows(svm_fits):
    X, _, accepted = _activations(3000)
    cav = fit_cav(X, accepted, "svm", cv_max_rows=900)
    rows = [n for n, _ in svm_fits]
    assert len(rows) == 3 * len(SVM_C_GRID) + 1  # the whole grid, three folds each, then one final fit
    assert max(rows[:-1]) <= 900 * 2 // 3 + 1 and rows[-1] == 3000  # folds of the subsample; final fit on all rows
    assert cav.info["cv_rows"] == 900
    assert cav.info["C"] == pytest.approx(cav.info["C_cv"] * 900 / 3000)  # same loss/regularisation balance


def test_subsampled_cross_validation_finds_the_concept_with_far_less_work(svm_fits):
    X, artifact, accepted = _activations(3000)
    full = fit_cav(X, accepted, "svm", cv_max_rows=len(X))
    work_full = sum(n * iters for n, iters in svm_fits)  # rows x liblinear iterations, summed over fits
    svm_fits.clear()
    bounded = fit_cav(X, accepted, "svm", cv_max_rows=1000)
    work_bounded = sum(n * iters for n, iters in svm_fits)
    assert work_bounded < work_full / 3
    # what the rounds need of the direction: the unaccepted artifact rows ranked above the clean ones
    auroc_full, auroc_bounded = (roc_auc_score(artifact, cav.score(X)) for cav in (full, bounded))
    assert auroc_full > 0.98 and auroc_bounded > auroc_full - 0.01
    assert full.direction @ bounded.direction > 0.9


def test_subsample_keeps_a_rare_class_whole_and_its_share_of_the_weight():
    rng = np.random.default_rng(0)
    y = np.zeros(10_000, bool)
    y[rng.choice(len(y), 5, replace=False)] = True  # five annotated samples, as in the first round
    weight = np.where(y, 1.0 / y.sum(), 1.0 / (~y).sum())
    weight = weight * len(y) / weight.sum()
    rows, sub_weight = _svm_cv_subsample(y, weight, 1000, seed=0)
    assert len(rows) == len(np.unique(rows)) == 1000 and np.all(np.diff(rows) > 0)
    assert set(np.flatnonzero(y)) <= set(rows)  # a proportional subsample would keep none
    assert sub_weight.mean() == pytest.approx(1.0)
    assert sub_weight[y[rows]].sum() / sub_weight.sum() == pytest.approx(weight[y].sum() / weight.sum())
    again, _ = _svm_cv_subsample(y, weight, 1000, seed=0)
    assert np.array_equal(rows, again)  # seeded: the same fit every time
    # each class keeps half when both have enough rows for it, whichever is the majority
    y_many = rng.random(10_000) < 0.7
    rows_many, _ = _svm_cv_subsample(y_many, np.ones(len(y_many)), 1000, seed=0)
    assert y_many[rows_many].sum() == 500
    assert _svm_cv_subsample(y, weight, len(y), seed=0)[0] is None  # no subsample at or below the threshold
