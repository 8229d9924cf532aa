"""CAV fitting recovers a planted direction; scores keep the decision boundary's sign."""
import numpy as np
import pytest
import torch

from utils.bias.cav import CAV, fit_cav, list_cav_methods
from utils.errors import UserError


def _planted(n=300, c=12, seed=0, p=0.2):
    rng = np.random.default_rng(seed)
    true = rng.normal(size=c)
    true /= np.linalg.norm(true)
    y = rng.random(n) < p
    X = rng.normal(size=(n, c)) * 0.5 + 2.0 + np.outer(y * 3.0, true)
    return X, y, true


@pytest.mark.parametrize("method", ["svm", "ridge", "lasso", "logistic", "signal", "mean"])
def test_recovers_planted_direction(method):
    X, y, true = _planted()
    cav = fit_cav(X, y, method)
    assert cav.method == method
    assert np.isclose(np.linalg.norm(cav.direction), 1.0)
    assert cav.direction @ true > 0.9
    scores = cav.score(X)
    assert scores[y].mean() > scores[~y].mean()
    if cav.bias is not None:  # methods with a threshold classify most samples correctly
        assert ((scores > 0) == y).mean() > 0.9


def test_all_methods_registered():
    assert set(list_cav_methods()) >= {"svm", "ridge", "lasso", "logistic", "signal", "mean"}


def test_signal_equals_mean_for_binary_labels():
    X, y, _ = _planted(seed=3)
    assert np.allclose(fit_cav(X, y, "signal").direction, fit_cav(X, y, "mean").direction)


def test_torch_input_and_roundtrip():
    X, y, _ = _planted(n=80, seed=1)
    cav = fit_cav(torch.from_numpy(X).float(), torch.from_numpy(y), "ridge")
    again = CAV.from_dict(cav.to_dict())
    assert np.allclose(again.score(X), cav.score(X))


def test_bad_input():
    X, y, _ = _planted(n=40)
    with pytest.raises(UserError, match="with and without"):
        fit_cav(X, np.zeros(40, bool), "svm")
    with pytest.raises(UserError, match="unknown CAV method"):
        fit_cav(X, y, "nope")
    with pytest.raises(UserError, match="channels"):
        fit_cav(X, y, "mean").score(X[:, :3])
