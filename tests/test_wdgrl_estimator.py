"""WDGRLClassifier: scikit-learn contract, input validation, methods, resume."""

import re

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks

import wdist_apps.wdgrl.estimator as estimator_module
from wdist_apps.runtime.logging import read_csv
from wdist_apps.wdgrl import WDGRLClassifier
from wdist_apps.wdgrl.data import make_moons_task
from wdist_apps.wdgrl.methods import CORALAligner, coral_loss, grad_reverse

FAST = dict(hidden=(32,), critic_hidden=(16,), epochs=3, min_steps=0, lr=1e-2, critic_lr=1e-3,
            random_state=0, device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def moons():
    return make_moons_task(30.0, n_source=200, n_target=200)


@pytest.mark.parametrize("check", [
    estimator_checks.check_no_attributes_set_in_init,
    estimator_checks.check_parameters_default_constructible,
    estimator_checks.check_get_params_invariance,
    estimator_checks.check_set_params,
])
def test_sklearn_estimator_checks_that_apply(check):
    # sklearn's generic fitting checks call fit(X, y); ours needs X_target, so those are
    # covered by the contract tests below instead.
    check("WDGRLClassifier", WDGRLClassifier())


def test_params_roundtrip_and_clone():
    est = WDGRLClassifier(method="dann", hidden=(8, 4), n_critic=3)
    params = est.get_params()
    assert params["method"] == "dann" and params["hidden"] == (8, 4) and params["n_critic"] == 3
    c = clone(est).set_params(n_critic=7)
    assert c.get_params()["n_critic"] == 7 and est.n_critic == 3


@pytest.mark.parametrize("method", ["wdgrl", "dann", "coral", "source_only"])
def test_fit_predict_contract(moons, method):
    labels = np.array(["left", "right"])[moons.ys]  # arbitrary label values
    est = WDGRLClassifier(method=method, **FAST)
    assert est.fit(moons.Xs, labels, moons.Xt) is est
    assert list(est.classes_) == ["left", "right"] and est.n_features_in_ == 2
    proba = est.predict_proba(moons.Xt_test)
    assert proba.shape == (len(moons.Xt_test), 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    pred = est.predict(moons.Xt_test)
    assert set(pred) <= {"left", "right"}
    np.testing.assert_array_equal(pred, est.classes_[proba.argmax(1)])
    assert est.transform(moons.Xs).shape == (len(moons.Xs), 32)
    assert (est.predict(moons.Xs, domain="source") == labels).mean() > 0.7  # learned the source
    assert len(est.history_) == 3 and all(np.isfinite(r["clf_loss"]) for r in est.history_)


def test_torch_and_numpy_inputs_give_the_same_model(moons):
    a = WDGRLClassifier(**FAST).fit(moons.Xs, moons.ys, moons.Xt)
    b = WDGRLClassifier(**FAST).fit(torch.from_numpy(moons.Xs), torch.from_numpy(moons.ys),
                                    torch.from_numpy(moons.Xt))
    np.testing.assert_array_equal(a.predict_proba(moons.Xt_test),
                                  b.predict_proba(torch.from_numpy(moons.Xt_test)))
    c = WDGRLClassifier(**{**FAST, "random_state": 1}).fit(moons.Xs, moons.ys, moons.Xt)
    assert not np.allclose(a.predict_proba(moons.Xt_test), c.predict_proba(moons.Xt_test))


def test_bad_input_errors_name_the_argument(moons):
    est = WDGRLClassifier(**FAST)
    with pytest.raises(NotFittedError):
        est.predict(moons.Xs)
    with pytest.raises(ValueError, match="X_target samples have shape"):
        est.fit(moons.Xs, moons.ys, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="at least two classes"):
        est.fit(moons.Xs, np.zeros(len(moons.Xs)), moons.Xt)
    Xn = moons.Xs.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        est.fit(Xn, moons.ys, moons.Xt)
    with pytest.raises(ValueError, match="X_target is empty"):
        est.fit(moons.Xs, moons.ys, np.zeros((0, 2)))
    with pytest.raises(ValueError, match=r"y must have shape \[200\]"):
        est.fit(moons.Xs, moons.ys[:-1], moons.Xt)
    with pytest.raises(TypeError, match="X must be a numeric"):
        est.fit([["a", "b"]] * 4, [0, 1, 0, 1], moons.Xt)
    with pytest.raises(ValueError, match="method must be one of"):
        WDGRLClassifier(method="mmd").fit(moons.Xs, moons.ys, moons.Xt)
    with pytest.raises(ValueError, match="n_critic must be a positive integer"):
        WDGRLClassifier(n_critic=0).fit(moons.Xs, moons.ys, moons.Xt)
    with pytest.raises(ValueError, match="the CNN extractor needs image inputs"):
        WDGRLClassifier(network="cnn", **{k: v for k, v in FAST.items() if k != "hidden"}).fit(
            moons.Xs, moons.ys, moons.Xt)
    est.fit(moons.Xs, moons.ys, moons.Xt)
    with pytest.raises(ValueError, match=r"fitted on \(2,\)"):
        est.predict(np.zeros((4, 5)))


def test_cnn_on_images():
    rng = np.random.default_rng(0)
    Xs = rng.random((40, 3, 16, 16), dtype=np.float32)
    ys = rng.integers(0, 3, 40)
    est = WDGRLClassifier(network="cnn", hidden=(20,), critic_hidden=(8,), epochs=1, min_steps=0,
                          device="cpu").fit(Xs, ys, Xs[::-1].copy())
    assert est.transform(Xs).shape == (40, 20) and est.predict(Xs).shape == (40,)


def test_grad_reverse_and_coral_against_references():
    x = torch.randn(5, 3, requires_grad=True)
    (grad_reverse(x, 0.5) * torch.arange(3.0)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), -0.5 * np.tile(np.arange(3.0), (5, 1)))
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 4)), 2 * rng.normal(size=(30, 4))
    ref = ((np.cov(a, rowvar=False) - np.cov(b, rowvar=False)) ** 2).sum() / (4 * 16)
    assert coral_loss(torch.from_numpy(a), torch.from_numpy(b)).item() == pytest.approx(ref)


def test_early_stopping_uses_source_validation_only(moons):
    est = WDGRLClassifier(method="source_only", patience=1, **{**FAST, "epochs": 30,
                                                                "lr": 0.05})
    est.fit(moons.Xs, moons.ys, moons.Xt, eval_set=(moons.Xt_test, moons.yt_test))
    losses = [r["source_val_loss"] for r in est.history_]
    assert len(losses) < 30  # stopped early
    assert est.best_epoch_ == int(np.argmin(losses)) + 1
    assert losses[est.best_epoch_ - 1] < losses[-1]  # stopped after a worse epoch
    # the restored model is the best-on-source-validation one, not the last
    n_val = int(round(0.1 * len(moons.Xs)))
    va = np.random.default_rng(0).permutation(len(moons.Xs))[:n_val]
    logp = np.log(est.predict_proba(moons.Xs[va], domain="source"))
    nll = -logp[np.arange(n_val), moons.ys[va]].mean()
    assert nll == pytest.approx(losses[est.best_epoch_ - 1], rel=1e-4)


def test_resume_after_interruption_gives_the_same_model(moons, tmp_path, monkeypatch):
    params = {**FAST, "epochs": 4}
    full = WDGRLClassifier(**params).fit(moons.Xs, moons.ys, moons.Xt)
    real_save = estimator_module.save_checkpoint
    saves = []

    def save_then_interrupt(state, path):
        real_save(state, path)
        saves.append(state["epoch"])
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(estimator_module, "save_checkpoint", save_then_interrupt)
    ck = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        WDGRLClassifier(**params).fit(moons.Xs, moons.ys, moons.Xt, checkpoint=ck,
                                      log_csv=tmp_path / "log.csv")
    monkeypatch.setattr(estimator_module, "save_checkpoint", real_save)
    resumed = WDGRLClassifier(**params).fit(moons.Xs, moons.ys, moons.Xt, checkpoint=ck,
                                            resume=True, log_csv=tmp_path / "log.csv")
    assert saves == [1, 2] and len(resumed.history_) == 4
    for p, q in zip(full.extractor_.parameters(), resumed.extractor_.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    np.testing.assert_array_equal(full.predict_proba(moons.Xt_test),
                                  resumed.predict_proba(moons.Xt_test))
    assert read_csv(tmp_path / "log.csv")["epoch"] == [1, 2, 3, 4]  # no row lost or repeated


def test_resume_refuses_other_params_or_data(moons, tmp_path):
    ck = tmp_path / "run.pt"
    params = {**FAST, "epochs": 2}
    WDGRLClassifier(**params).fit(moons.Xs, moons.ys, moons.Xt, checkpoint=ck)
    for change, key in [({"lr": 0.5}, "lr: 0.01 in the checkpoint, 0.5 now"),
                        ({"hidden": (64,)}, "hidden: [32] in the checkpoint, [64] now"),
                        ({"method": "dann"}, "method: 'wdgrl' in the checkpoint, 'dann' now")]:
        with pytest.raises(ValueError, match=f"cannot resume from .*{re.escape(key)}"):
            WDGRLClassifier(**{**params, **change}).fit(moons.Xs, moons.ys, moons.Xt,
                                                         checkpoint=ck, resume=True)
    with pytest.raises(ValueError, match=r"X.shape: \[200, 2\] in the checkpoint, \[150, 2\]"):
        WDGRLClassifier(**params).fit(moons.Xs[:150], moons.ys[:150], moons.Xt, checkpoint=ck,
                                      resume=True)
    with pytest.raises(ValueError, match="data hash"):
        WDGRLClassifier(**params).fit(moons.Xs + 1, moons.ys, moons.Xt, checkpoint=ck,
                                      resume=True)
    # epochs, verbose and device may change: training continues from epoch 2
    more = WDGRLClassifier(**{**params, "epochs": 3, "hidden": [32]}).fit(
        moons.Xs, moons.ys, moons.Xt, checkpoint=ck, resume=True)
    assert [r["epoch"] for r in more.history_] == [1, 2, 3]
    # ... but not DANN's: its gradient-reversal schedule is a function of the epoch fraction
    dann = {**params, "method": "dann"}
    WDGRLClassifier(**dann).fit(moons.Xs, moons.ys, moons.Xt, checkpoint=tmp_path / "d.pt")
    with pytest.raises(ValueError, match="epochs: 2 in the checkpoint, 3 now"):
        WDGRLClassifier(**{**dann, "epochs": 3}).fit(moons.Xs, moons.ys, moons.Xt,
                                                      checkpoint=tmp_path / "d.pt", resume=True)


def test_coral_default_weight_is_the_official_baselines():
    """WDGRL's code adds 0.01 * l2_loss(C_s - C_t) = 0.005 ||C_s - C_t||^2; our term is
    ||C_s - C_t||^2 / (4 k^2), so the default weight is 0.02 k^2 for k features."""
    import torch

    est = WDGRLClassifier(method="coral")
    aligner = est._make_aligner(feat_dim=50, device=torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    h_s, h_t = torch.randn(64, 50, generator=g), 2 * torch.randn(64, 50, generator=g)
    d = torch.cov(h_s.T) - torch.cov(h_t.T)
    official = 0.01 * (d * d).sum() / 2  # tf.nn.l2_loss(t) = sum(t ** 2) / 2
    torch.testing.assert_close(aligner.loss(h_s, h_t, 0.5), official)


def test_coral_with_a_one_sample_last_batch_stays_finite(moons):
    # 200 source samples, no validation split, batch 199: the last batch has one sample,
    # whose covariance is 0/0.
    est = WDGRLClassifier(method="coral", val_fraction=0.0, batch_size=199,
                          **{**FAST, "epochs": 2})
    est.fit(moons.Xs, moons.ys, moons.Xt)
    assert np.isfinite(est.predict_proba(moons.Xt_test)).all()
    assert coral_loss(torch.ones(1, 3), torch.randn(5, 3)).item() == 0.0


def test_non_finite_training_loss_raises(moons, monkeypatch):
    monkeypatch.setattr(CORALAligner, "loss", lambda self, h_s, h_t, p: h_s.new_tensor(np.nan))
    with pytest.raises(FloatingPointError, match="training loss became nan .*epoch 1, step 1"):
        WDGRLClassifier(method="coral", **FAST).fit(moons.Xs, moons.ys, moons.Xt)


def test_more_bad_inputs_name_the_argument(moons):
    def fit(**kw):
        params = {**FAST, **{k: v for k, v in kw.items() if k != "eval_set"}}
        WDGRLClassifier(**params).fit(moons.Xs, moons.ys, moons.Xt, eval_set=kw.get("eval_set"))

    with pytest.raises(ValueError, match=r"eval_set must be a pair \(X_eval, y_eval\)"):
        fit(eval_set=moons.Xt_test)
    with pytest.raises(ValueError, match=r"eval_set\[0\] samples have shape \(3,\)"):
        fit(eval_set=(np.zeros((4, 3)), np.zeros(4)))
    with pytest.raises(ValueError, match="hidden must be a tuple of positive ints"):
        fit(hidden=(0,))
    with pytest.raises(ValueError, match="critic_hidden must be a tuple of positive ints"):
        fit(critic_hidden="16")
    with pytest.raises(ValueError, match="patience must be a positive int or None, got 0"):
        fit(patience=0)
    with pytest.raises(ValueError, match="at least 16x16 pixels.*H=8, W=8"):
        WDGRLClassifier(network="cnn", epochs=1, min_steps=0, device="cpu").fit(
            np.zeros((4, 1, 8, 8)), [0, 1, 0, 1], np.zeros((4, 1, 8, 8)))
