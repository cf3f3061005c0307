"""WDGRLClassifier follows scikit-learn's conventions: random_state, keyword-only parameters,
no global random state changed by fit, clone / get_params / set_params, pickling, GridSearchCV,
and scikit-learn's own estimator checks.

Of ``sklearn.utils.estimator_checks``, every check runs (slow marker); they call ``fit(X, y)``
without target data, which the estimator treats as "the source is its own target", so they test
the classifier contract, not the adaptation. The one that does not apply is skipped by
scikit-learn itself: ``check_array_api_input`` (inputs go to torch, not through the array API).
Sparse input is refused with a clear error (the networks take dense tensors).
"""

import math
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from wdist_apps.wdgrl import WDGRLClassifier
from wdist_apps.wdgrl.shifts import make_shift_task

TINY = dict(hidden=(16,), critic_hidden=(8,), epochs=2, min_steps=0, lr=1e-2, device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def task():
    return make_shift_task("affine2d", seed=7, n=120)


@pytest.mark.slow
@parametrize_with_checks([WDGRLClassifier(**TINY, random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_constructor_is_keyword_only():
    with pytest.raises(TypeError):
        WDGRLClassifier("dann")
    assert WDGRLClassifier(random_state=0).random_state == 0


def test_random_state_forms_and_global_state_untouched(task):
    def fit(rs):
        return WDGRLClassifier(**TINY, random_state=rs).fit(task.Xs, task.ys, task.Xt)

    torch.manual_seed(123)
    before, np_before = torch.get_rng_state(), np.random.get_state()[1].copy()
    a, b = fit(0), fit(0)
    assert torch.equal(torch.get_rng_state(), before)  # fit forks torch's generator
    np.testing.assert_array_equal(np.random.get_state()[1], np_before)
    np.testing.assert_array_equal(a.predict_proba(task.Xt_test), b.predict_proba(task.Xt_test))
    c = fit(1)
    assert not np.allclose(a.predict_proba(task.Xt_test), c.predict_proba(task.Xt_test))
    # RandomState / Generator: the same state gives the same model
    p = fit(np.random.RandomState(5)).predict_proba(task.Xt_test)
    np.testing.assert_array_equal(p, fit(np.random.RandomState(5)).predict_proba(task.Xt_test))
    g = fit(np.random.default_rng(5)).predict_proba(task.Xt_test)
    np.testing.assert_array_equal(g, fit(np.random.default_rng(5)).predict_proba(task.Xt_test))
    assert fit(None).predict(task.Xt_test).shape == (len(task.Xt_test),)
    with pytest.raises(ValueError, match="random_state must be"):
        fit("zero")


def test_clone_params_and_pickle_of_a_fitted_model(task):
    est = WDGRLClassifier(**TINY, random_state=0).set_params(wd_weight=0.5)
    assert est.get_params()["wd_weight"] == 0.5
    c = clone(est)
    assert c.get_params() == est.get_params() and c is not est
    est.fit(task.Xs, task.ys, task.Xt)
    assert not hasattr(clone(est), "extractor_")
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.predict_proba(task.Xt_test),
                                  est.predict_proba(task.Xt_test))


def test_grid_search_over_wd_weight_with_a_target_labelled_scorer(task):
    Xv, yv = task.Xt_test[:60], task.yt_test[:60]  # labelled target validation data

    def target_accuracy(est, X, y):  # ignores the source fold: scores on target labels
        return est.score(Xv, yv)

    gs = GridSearchCV(WDGRLClassifier(**TINY, random_state=0), {"wd_weight": [0.0, 1.0]},
                      scoring=target_accuracy, cv=2)
    gs.fit(task.Xs, task.ys, X_target=task.Xt[:100])  # 100 != 120: passed whole, not split
    scores = gs.cv_results_["mean_test_score"]
    assert gs.best_params_["wd_weight"] == [0.0, 1.0][int(np.argmax(scores))]
    assert gs.best_estimator_.wd_weight == gs.best_params_["wd_weight"]
    mean, scale = gs.best_estimator_.scalers_["target"]  # refit saw the target data
    np.testing.assert_allclose(mean.ravel(), task.Xt[:100].mean(0), rtol=1e-5, atol=1e-5)


def test_per_domain_standardisation_matches_standard_scaler(task):
    est = WDGRLClassifier(**TINY, standardize="domain", random_state=0).fit(
        task.Xs, task.ys, task.Xt)
    iso = WDGRLClassifier(**TINY, random_state=0).fit(task.Xs, task.ys, task.Xt)  # the default
    for domain, X in (("source", task.Xs), ("target", task.Xt)):
        ref = StandardScaler().fit(X)
        mean, scale = est.scalers_[domain]
        np.testing.assert_allclose(mean.ravel(), ref.mean_, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(scale.ravel(), ref.scale_, rtol=1e-5)
        mean, scale = iso.scalers_[domain]  # one scale: the RMS of the per-feature deviations
        np.testing.assert_allclose(mean.ravel(), ref.mean_, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(scale.ravel(), np.sqrt(np.mean(ref.scale_**2)), rtol=1e-5)
    joint = WDGRLClassifier(**TINY, standardize="joint", random_state=0).fit(
        task.Xs, task.ys, task.Xt)
    ref = StandardScaler().fit(np.concatenate([task.Xs, task.Xt]))
    np.testing.assert_allclose(joint.scalers_["source"][1].ravel(), ref.scale_, rtol=1e-5)
    with pytest.raises(ValueError, match="standardize must be one of"):
        WDGRLClassifier(**TINY, standardize="minmax").fit(task.Xs, task.ys, task.Xt)


def test_min_steps_sets_the_number_of_epochs(task):
    est = WDGRLClassifier(**{**TINY, "min_steps": 50}, val_fraction=0.0, random_state=0)
    est.fit(task.Xs, task.ys, task.Xt)
    steps = math.ceil(len(task.Xs) / 32)  # 4 steps per epoch
    assert est.n_epochs_ == math.ceil(50 / steps) == len(est.history_)
    with pytest.raises(ValueError, match="min_steps must be a non-negative integer"):
        WDGRLClassifier(min_steps=-1).fit(task.Xs, task.ys, task.Xt)


def test_isotropic_standardisation_keeps_a_rotated_domain_a_rotation():
    from wdist_apps.wdgrl.estimator import _scale, fit_scalers

    rng = np.random.default_rng(0)
    Xs = rng.normal(size=(400, 2)) * [3.0, 0.5] + [5.0, -2.0]
    t = np.deg2rad(50)
    R = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    Xt = Xs @ R.T + [10.0, 4.0]
    iso = fit_scalers(Xs, Xt, "domain_isotropic")
    Zs, Zt = _scale(Xs, iso["source"]), _scale(Xt, iso["target"])
    np.testing.assert_allclose(Zt, Zs @ R.T, atol=1e-4)  # the same rotation, nothing else
    per_feature = fit_scalers(Xs, Xt, "domain")
    Zs, Zt = _scale(Xs, per_feature["source"]), _scale(Xt, per_feature["target"])
    assert np.abs(Zt - Zs @ R.T).max() > 0.5  # per-feature scaling distorts it
