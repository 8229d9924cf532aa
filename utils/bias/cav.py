"""Concept activation vectors (CAVs): a direction in a layer's feature space that separates
samples with an artifact from samples without it.

``fit_cav(features, labels, method)`` looks the method up in a registry (``@register_cav_method``)
and returns a :class:`CAV` with a unit-norm ``direction`` and, where the method has one, a
``bias`` such that ``CAV.score(x) = <x, v> + bias`` is positive for predicted artifact samples.

Every method weights the classes equally (sample weights 1/n_pos and 1/n_neg): artifacts are
rare, and an unweighted fit would be pulled towards the majority (clean) class.

Note on ``signal`` and ``mean``: for a binary label, ``cov(x, y) / var(y)`` equals the difference of
the class means exactly, so both give the same direction. Both are kept because the published
work names both, and the equality is a useful invariant test.

Each method's formula: experiments/sample_retrieval/README.md, "How it is computed".
"""
from dataclasses import dataclass, field

import numpy as np

from utils.errors import UserError
from utils.registry import Registry

CAV_METHODS = Registry("CAV method")

# C grid of the linear SVM, one value chosen by cross-validation
# (experiments/sample_retrieval/README.md, "How it is computed")
SVM_C_GRID = tuple(10.0 ** k for k in range(-5, 5))
# Above this many rows the C of the linear SVM is chosen on a class-balanced, seeded subsample of this
# many rows, and only the final fit sees every row. The grid's large C values (10 and up: they rarely
# win) dominate the cost, and liblinear needs ever more iterations for them as rows are added (the loss
# is a sum over rows, so each added row weakens the regularisation): with the cross-validation on every
# row, the simulated annotation rounds, which refit the CAV about 20 times, grew as N^1.4 on the scaling
# benchmark's generated store (2.5 CPU s at 1,000 samples, 200 at 16,000 and 25,000).
# 4,000 is above every CAV fit of the demo (2,000 training samples), whose results therefore stay those
# of the cross-validation on all rows, and enough rows to rank the grid's C values (a balanced accuracy
# measured on ~1,300 held-out rows per fold).
SVM_CV_MAX_ROWS = 4000


@dataclass
class CAV:
    """A fitted concept direction.

    Attributes
    ----------
    direction : np.ndarray
        Unit L2-norm direction (C,), pointing towards the artifact class.
    bias : float or None
        Offset in units of the unit direction (the fitted intercept divided by the weight norm);
        ``None`` for methods without a decision threshold (``signal``, ``mean``).
    method : str
        Registry name of the fitting method.
    info : dict
        Method details worth reporting (e.g. the C chosen by cross-validation).
    """

    direction: np.ndarray
    bias: float | None
    method: str
    info: dict = field(default_factory=dict)

    def score(self, features) -> np.ndarray:
        """Projection of each row of ``features`` (N, C) on the direction, plus the bias if any."""
        features = _as_numpy(features)
        if features.ndim != 2 or features.shape[1] != self.direction.shape[0]:
            raise UserError(f"CAV has {self.direction.shape[0]} channels, features have shape {features.shape}")
        scores = features @ self.direction
        return scores + self.bias if self.bias is not None else scores

    def to_dict(self):
        return {"method": self.method, "bias": self.bias, "direction": self.direction.tolist(), "info": self.info}

    @classmethod
    def from_dict(cls, data):
        return cls(np.asarray(data["direction"], dtype=np.float64), data["bias"], data["method"], data.get("info", {}))


def register_cav_method(name):
    """Decorator: ``fit(X, y, sample_weight, **options) -> (weights (C,), intercept or None, info)``."""
    return CAV_METHODS.register(name)


def list_cav_methods():
    return CAV_METHODS.names()


def fit_cav(features, labels, method="svm", **options) -> CAV:
    """Fit a CAV on ``features`` (N, C; numpy or torch) with boolean ``labels`` (N,).

    Returns a :class:`CAV` whose direction is L2-normalised; the intercept is divided by the same
    norm so the score keeps its sign (and its decision boundary).
    """
    fit = CAV_METHODS.get(method)
    X = _as_numpy(features)
    y = _as_numpy(labels).astype(bool).ravel()
    if X.ndim != 2 or len(X) != len(y):
        raise UserError(f"CAV features must be (N, C) with N labels; got {X.shape} and {y.shape[0]} labels")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise UserError(f"a CAV needs samples with and without the artifact; got {n_pos} with, {n_neg} without")
    weight = np.where(y, 1.0 / n_pos, 1.0 / n_neg)
    weight = weight * len(y) / weight.sum()  # mean weight 1 keeps regularisation strengths comparable
    w, intercept, info = fit(X, y, weight, **options)
    w = np.asarray(w, dtype=np.float64).ravel()
    norm = float(np.linalg.norm(w))
    if not np.isfinite(norm) or norm == 0.0:
        raise UserError(f"CAV method '{method}' found no direction (all weights zero); "
                        "try another cav_type or more annotated samples")
    bias = None if intercept is None else float(intercept) / norm
    return CAV(w / norm, bias, method, info)


def _as_numpy(x):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _signed(y):
    return np.where(y, 1.0, -1.0)


@register_cav_method("svm")
def _fit_svm(X, y, weight, c_grid=SVM_C_GRID, cv=3, seed=0, cv_max_rows=SVM_CV_MAX_ROWS):
    """Linear SVM; C by stratified cross-validation (balanced accuracy) over ``c_grid``.

    With more than ``cv_max_rows`` rows the cross-validation runs on a subsample of that many
    (:func:`_svm_cv_subsample`) and the final fit on all rows uses the chosen C scaled by
    ``cv_max_rows / N``: the SVM's loss is a sum over rows, so this keeps the balance between the loss
    and the regularisation that the cross-validation chose (and the final fit as quick to converge as
    a fit on the subsample).
    """
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import LinearSVC

    folds = min(cv, int(y.sum()), int((~y).sum()))
    best_c, best_score = c_grid[len(c_grid) // 2], -np.inf
    final_c, info = best_c, {}
    if folds >= 2:
        rows, cv_weight = _svm_cv_subsample(y, weight, cv_max_rows, seed)
        X_cv, y_cv = (X, y) if rows is None else (X[rows], y[rows])
        folds = min(folds, int(y_cv.sum()), int((~y_cv).sum()))  # the subsample keeps >= that many of each class
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        for c in c_grid:
            scores = []
            for train, test in splitter.split(X_cv, y_cv):
                model = LinearSVC(C=c, max_iter=5000).fit(X_cv[train], y_cv[train], sample_weight=cv_weight[train])
                pred = model.predict(X_cv[test])
                scores.append(0.5 * ((pred[y_cv[test]]).mean() + (~pred[~y_cv[test]]).mean()))
            if np.mean(scores) > best_score + 1e-12:  # ties keep the smaller (more regularised) C
                best_c, best_score = c, float(np.mean(scores))
        final_c = best_c
        if rows is not None:
            final_c = best_c * len(rows) / len(y)
            info = {"C_cv": best_c, "cv_rows": int(len(rows))}  # only when subsampled: small fits report as before
    model = LinearSVC(C=final_c, max_iter=5000).fit(X, y, sample_weight=weight)
    return model.coef_[0], model.intercept_[0], {"C": final_c, "cv_balanced_accuracy": best_score, **info}


def _svm_cv_subsample(y, weight, max_rows, seed):
    """Rows (sorted) and their weights for the SVM's cross-validation; ``(None, weight)`` when all
    ``len(y) <= max_rows`` rows take part.

    Each class keeps up to half the rows, and the rarer class gives its unused share to the other: an
    artifact with 5 annotated samples among 25,000 keeps all 5 (a subsample in proportion would keep
    none, and there would be no cross-validation). The weights are rescaled so that each class holds
    the same share of the total weight as on all rows, with mean weight 1 on the subsample.
    """
    if len(y) <= max_rows:
        return None, weight
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    n_pos = min(len(pos), max(max_rows // 2, max_rows - len(neg)))
    rows = np.sort(np.concatenate([rng.choice(pos, n_pos, replace=False),
                                   rng.choice(neg, max_rows - n_pos, replace=False)]))
    sub_weight = weight[rows].astype(np.float64, copy=True)
    for label in (True, False):
        in_sub = y[rows] == label
        sub_weight[in_sub] *= weight[y == label].sum() / sub_weight[in_sub].sum()
    return rows, sub_weight * len(rows) / weight.sum()


@register_cav_method("ridge")
def _fit_ridge(X, y, weight, alpha=1.0):
    from sklearn.linear_model import Ridge

    model = Ridge(alpha=alpha).fit(X, _signed(y), sample_weight=weight)
    return model.coef_, model.intercept_, {"alpha": alpha}


@register_cav_method("lasso")
def _fit_lasso(X, y, weight, alpha=None):
    """L1-regularised regression on +-1 labels; ``alpha`` defaults to 1% of the largest useful alpha."""
    from sklearn.linear_model import Lasso

    target = _signed(y)
    if alpha is None:
        # above alpha_max every weight is zero; a small fraction of it keeps the informative ones
        centred = X - np.average(X, axis=0, weights=weight)
        alpha_max = np.abs(centred.T @ (weight * (target - np.average(target, weights=weight)))).max() / len(y)
        alpha = 0.01 * alpha_max if alpha_max > 0 else 1e-4
    model = Lasso(alpha=alpha, max_iter=10000).fit(X, target, sample_weight=weight)
    return model.coef_, model.intercept_, {"alpha": float(alpha)}


@register_cav_method("logistic")
def _fit_logistic(X, y, weight, C=1.0):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, max_iter=2000).fit(X, y, sample_weight=weight)
    return model.coef_[0], model.intercept_[0], {"C": C}


@register_cav_method("signal")
def _fit_signal(X, y, weight):
    """Pattern-CAV (Haufe et al.): ``cov(x, y) / var(y)`` with mean-centred features and labels."""
    t = y.astype(np.float64)
    x_c = X - X.mean(axis=0)
    t_c = t - t.mean()
    return (x_c * t_c[:, None]).sum(0) / (t_c ** 2).sum(), None, {}


@register_cav_method("mean")
def _fit_mean(X, y, weight):
    """Difference of the class means."""
    return X[y].mean(0) - X[~y].mean(0), None, {}
