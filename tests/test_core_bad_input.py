import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import wdist

CLEAR_ERRORS = (ValueError, TypeError)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: wdist.emd(np.ones((3, 2)), np.ones((4, 3))), "same number of features"),
        (lambda: wdist.emd(np.ones((3, 2)), np.full((4, 2), np.nan)), "y contains NaN"),
        (lambda: wdist.emd(np.ones((3, 2)), np.ones((4, 2)), a=[1, -1, 1]), "a has negative"),
        (lambda: wdist.emd(np.ones((3, 2)), np.ones((4, 2)), b=np.zeros(4)), "b has zero total"),
        (lambda: wdist.emd(np.ones((3, 2)), np.ones((4, 2)), a=[1, 1]), r"a must have shape \[3\]"),
        (lambda: wdist.emd(np.ones((0, 2)), np.ones((4, 2))), "x is empty"),
        (lambda: wdist.emd(np.ones((3, 2)), np.ones((4, 2)), p=0.5), "p must be"),
        (lambda: wdist.sinkhorn(np.ones((3, 2)), np.ones((4, 2)), blur=0), "blur"),
        (lambda: wdist.sinkhorn(np.ones((3, 2)), np.ones((4, 2)), scaling=1.5), "scaling"),
        (lambda: wdist.sinkhorn(np.ones((3, 2)), np.ones((4, 2)), backend="gpu"), "backend"),
        (lambda: wdist.sinkhorn(np.ones((2, 3, 2)), np.ones((3, 4, 2))), "batch size"),
        (lambda: wdist.sinkhorn(np.ones((3, 2)), np.ones((4, 2)), reach=-1), "reach"),
        (lambda: wdist.wasserstein_1d([], [1.0]), "u_values"),
        (lambda: wdist.wasserstein_1d([1.0, np.inf], [1.0]), "u_values contains NaN"),
        (lambda: wdist.wasserstein_1d(np.ones((2, 3)), np.ones((3, 3))), "broadcast"),
        (lambda: wdist.sliced_wasserstein(np.ones((3, 2)), np.ones((3, 2)), n_projections=0),
         "n_projections"),
        (lambda: wdist.gaussian_w2(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2)), "cov1"),
        (lambda: wdist.gaussian_w2(np.zeros(2), np.eye(2), np.zeros(2), [[1, 2], [0, 1]]),
         "cov2 must be symmetric"),
        (lambda: wdist.frechet_distance(np.ones((1, 2)), np.ones((5, 2))), "feats1 needs at least"),
        (lambda: wdist.emd(torch.ones(3, 2), torch.ones(4, 2, dtype=torch.float64)), "dtype"),
        (lambda: wdist.emd(np.array([["a", "b"]]), np.ones((4, 2))), "x must hold numbers"),
        (lambda: wdist.emd(np.zeros((1, 1)), np.full((1, 1), 1e200), p=2), "overflows"),
        (lambda: wdist.sinkhorn(torch.zeros(1, 1), torch.full((1, 1), 1e30)),
         "overflows"),
        # (1e200)^2 = 1e400 is beyond float64: an error, never inf (or NaN = 0 * inf with weights)
        (lambda: wdist.wasserstein_1d([0.0], [1e200], [1.0], [1.0], p=2), "overflows"),
        (lambda: wdist.sliced_wasserstein(np.zeros((1, 1)), np.full((1, 1), 1e200), a=[1.0]),
         "overflows"),
        (lambda: wdist.sliced_wasserstein(np.zeros((1, 1)), np.full((1, 1), 1e200)), "overflows"),
        (lambda: wdist.certified_w1(torch.nn.Linear(2, 1), torch.ones(3, 2),
                                    torch.full((4, 2), float("nan"))), "fake contains NaN"),
        (lambda: wdist.certified_w1(lambda t: 10 * t[:, 0], torch.zeros(1, 2).double(),
                                    torch.from_numpy(np.array([[-1e308, 0.0], [0.0, 0.0]]))),
         "overflow"),
        (lambda: wdist.quantile_function(torch.tensor([0.5]), torch.tensor([-1.0, float("nan")]),
                                         torch.tensor([0.0, 1.0])), "cdf contains NaN"),
        (lambda: wdist.quantile_function(torch.tensor([1.5]), torch.tensor([0.5, 1.0]),
                                         torch.tensor([0.0, 1.0])), "qs must be levels"),
        (lambda: wdist.gaussian_w2(np.full(2, 1e300), np.eye(2), np.zeros(2), np.eye(2)),
         "overflows"),
        (lambda: wdist.generator_loss(torch.nn.Linear(2, 1), torch.full((3, 2), float("nan"))),
         "fake contains NaN"),
        (lambda: wdist.pair_penalty(torch.nn.Linear(2, 1), torch.ones(3, 2), torch.ones(4, 3)),
         "same sample shape"),
        (lambda: wdist.gradient_penalty(torch.nn.Linear(2, 1), np.ones((3, 2)), np.ones((3, 2))),
         "torch tensors"),
        (lambda: wdist.WassersteinCritic(torch.nn.Linear(2, 1)).step(
            torch.full((3, 2), float("inf")), torch.ones(3, 2)), "real contains NaN or inf"),
    ],
)
def test_clear_errors(call, match):
    with pytest.raises(CLEAR_ERRORS, match=match):
        call()


def test_validation_can_be_switched_off_for_hot_loops():
    wdist.set_validation(False)
    try:
        out = wdist.wasserstein_1d(torch.tensor([0.0, float("nan")]), torch.tensor([1.0]))
        assert math.isnan(out.item())  # unchecked: the caller opted out
    finally:
        wdist.set_validation(True)
    with wdist.set_validation(False):  # as a context manager: off inside, restored after
        assert math.isnan(wdist.wasserstein_1d(torch.tensor([float("nan")]), torch.ones(1)))
    with pytest.raises(ValueError, match="NaN"):
        wdist.wasserstein_1d(torch.tensor([float("nan")]), torch.ones(1))


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64)
anyfloat = st.floats(allow_nan=True, allow_infinity=True, width=64)


def clouds(elements):
    return st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 3)).flatmap(
        lambda s: st.tuples(
            arrays(np.float64, (s[0], s[2]), elements=elements),
            arrays(np.float64, (s[1], s[2]), elements=elements),
            arrays(np.float64, (s[0],), elements=st.floats(-1, 2, width=64)),
        )
    )


def _finite_or_clear_error(fn, valid=False):
    """Invalid inputs may raise a clear error; valid ones must give a finite number (an error
    there is a defect: weighted sliced_wasserstein once raised for every input)."""
    if valid:
        out = fn()
    else:
        try:
            out = fn()
        except CLEAR_ERRORS:
            return
    out = out[0] if isinstance(out, tuple) else out
    assert torch.isfinite(out).all()


def _valid(name, x, y, a):
    """Inputs every function must accept: finite points, and (where used) weights that are
    finite, non-negative with positive mass; the Fréchet distance needs 2 samples per side."""
    ok = bool(np.isfinite(x).all() and np.isfinite(y).all())
    if name in WEIGHTED:
        ok = ok and bool(np.isfinite(a).all() and (a >= 0).all() and a.sum() > 0)
    if name == "frechet":
        ok = ok and len(x) >= 2 and len(y) >= 2
    return ok


FUNCS = {
    "emd": lambda x, y, a: wdist.emd(x, y, a=a),
    "sinkhorn": lambda x, y, a: wdist.sinkhorn(x, y, a=a, blur=0.5),
    "sinkhorn_online": lambda x, y, a: wdist.sinkhorn(x, y, a=a, blur=0.5, backend="online"),
    "sliced": lambda x, y, a: wdist.sliced_wasserstein(x, y, a=a, n_projections=4, seed=0),
    "max_sliced": lambda x, y, a: wdist.sliced_wasserstein(x, y, a=a, n_projections=4, seed=0,
                                                           max_sliced=True, max_iter=3),
    "one_d": lambda x, y, a: wdist.wasserstein_1d(x[:, 0], y[:, 0], u_weights=a),
    "frechet": lambda x, y, a: wdist.frechet_distance(x, y),
    "certified_w1": lambda x, y, a: wdist.certified_w1(_linear_critic(x), _t(x), _t(y)),
    "pair_penalty": lambda x, y, a: wdist.pair_penalty(_linear_critic(x), _t(x), _t(y)),
    "critic_loss": lambda x, y, a: wdist.critic_loss(_linear_critic(x), _t(x), _t(y)),
    "generator_loss": lambda x, y, a: wdist.generator_loss(_linear_critic(x), _t(y)),
    "gradient_penalty": lambda x, y, a: wdist.gradient_penalty(
        _linear_critic(x), _t(x), _t(x).flip(0)),
    "emd_from_cost": lambda x, y, a: wdist.emd_from_cost(torch.cdist(_t(x), _t(y)), a),
    "quantile_function": lambda x, y, a: wdist.quantile_function(
        torch.linspace(0, 1, 5, dtype=torch.float64), torch.cumsum(_t(a), 0) / _t(a).sum(),
        torch.sort(_t(x[:, 0])).values),
    "gaussian_w2": lambda x, y, a: wdist.gaussian_w2(
        _t(x[0]), torch.eye(x.shape[1], dtype=torch.float64), _t(y[0]),
        torch.eye(x.shape[1], dtype=torch.float64)),
}


WEIGHTED = {"emd", "sinkhorn", "sinkhorn_online", "sliced", "max_sliced", "one_d",
            "emd_from_cost", "quantile_function"}


def _t(x):
    return torch.as_tensor(x)


def _linear_critic(x):
    torch.manual_seed(0)
    return torch.nn.Linear(x.shape[1], 1).double()


# random clouds at blur 0.5 may need more than max_iter iterations: a warning, not a failure
@pytest.mark.filterwarnings("ignore:sinkhorn did not reach tol")
@pytest.mark.parametrize("name", sorted(FUNCS))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=clouds(finite))
def test_property_finite_inputs(name, data):
    x, y, a = data
    _finite_or_clear_error(lambda: FUNCS[name](x, y, a), valid=_valid(name, x, y, a))


def valid_clouds():
    """Finite points and positive weights: always valid."""
    return st.tuples(st.integers(2, 6), st.integers(2, 6), st.integers(1, 3)).flatmap(
        lambda s: st.tuples(
            arrays(np.float64, (s[0], s[2]), elements=finite),
            arrays(np.float64, (s[1], s[2]), elements=finite),
            arrays(np.float64, (s[0],), elements=st.floats(1e-3, 2, width=64)),
        )
    )


# random clouds at blur 0.5 may need more than max_iter iterations: a warning, not a failure
@pytest.mark.filterwarnings("ignore:sinkhorn did not reach tol")
@pytest.mark.parametrize("name", sorted(FUNCS))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=valid_clouds())
def test_property_valid_inputs_give_finite_values(name, data):
    x, y, a = data
    assert _valid(name, x, y, a)
    _finite_or_clear_error(lambda: FUNCS[name](x, y, a), valid=True)


# random clouds at blur 0.5 may need more than max_iter iterations: a warning, not a failure
@pytest.mark.filterwarnings("ignore:sinkhorn did not reach tol")
@pytest.mark.parametrize("name", sorted(FUNCS))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=clouds(anyfloat))
def test_property_any_values(name, data):
    x, y, a = data
    _finite_or_clear_error(lambda: FUNCS[name](x, y, a))


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 4), n=st.integers(1, 5), m=st.integers(1, 5),
       kappa=st.sampled_from([0.0, 0.5, 1.0]))
def test_property_quantile_huber(b, n, m, kappa):
    out = wdist.quantile_huber_loss(torch.randn(b, n), torch.randn(b, m), kappa=kappa)
    assert torch.isfinite(out) and out.item() >= 0


@settings(max_examples=20, deadline=None)
@given(d=st.integers(1, 4), seed=st.integers(0, 1000))
def test_property_gaussian_w2(d, seed):
    g = np.random.default_rng(seed)
    a, b = g.normal(size=(d, d)), g.normal(size=(d, d))
    val = wdist.gaussian_w2(g.normal(size=d), a @ a.T, g.normal(size=d), b @ b.T)
    assert torch.isfinite(val) and val.item() >= 0
