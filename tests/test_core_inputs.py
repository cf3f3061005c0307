"""Input kinds every public function must handle the same way: numpy views with negative strides,
complex numbers, empty batches, half precision, and keyword-only options."""

import inspect

import numpy as np
import pytest
import scipy.stats
import torch

import wdist


def test_negative_strides_scipy_collapse_case():
    # scipy's test_collapse: collapsing onto a point mass at 0 gives the weighted mean of |u|
    u = np.arange(-10, 30, 0.3)
    v = np.zeros_like(u)
    w = np.arange(len(u))
    ref = np.average(np.abs(u), weights=w)
    assert scipy.stats.wasserstein_distance(u, v, w, w[::-1]) == pytest.approx(ref, rel=1e-12)
    assert wdist.wasserstein_1d(u, v, w, w[::-1]).item() == pytest.approx(ref, rel=1e-12)
    assert wdist.wasserstein_1d(u[::-1], v, w[::-1], w).item() == pytest.approx(ref, rel=1e-12)


def _calls(flip):
    """Every public function that takes data, each input through ``flip`` (a view or a copy)."""
    g = np.random.default_rng(0)
    x, y = g.normal(size=(7, 3)), g.normal(size=(6, 3))
    a, b, cov = g.random(7) + 0.1, g.random(6) + 0.1, np.eye(3) + 0.1
    pred, target = g.normal(size=(4, 5)), g.normal(size=(4, 3))
    f = flip
    return {
        "emd": lambda: wdist.emd(f(x), f(y), f(a), f(b), p=2),
        "emd_from_cost": lambda: wdist.emd_from_cost(f(x @ y.T), f(a), f(b)),
        "wasserstein_1d": lambda: wdist.wasserstein_1d(f(x[:, 0]), f(y[:, 0]), f(a), f(b), p=2),
        "sinkhorn": lambda: wdist.sinkhorn(f(x), f(y), f(a), f(b), blur=0.5),
        "sliced_wasserstein": lambda: wdist.sliced_wasserstein(f(x), f(y), f(a), f(b), seed=0),
        "gaussian_w2": lambda: wdist.gaussian_w2(f(x[0]), f(cov), f(y[0]), f(2 * cov)),
        "frechet_distance": lambda: wdist.frechet_distance(f(x), f(y)),
        "quantile_function": lambda: wdist.quantile_function(
            f(np.linspace(0, 1, 5)), f(np.cumsum(a) / a.sum()), f(np.sort(x[:, 0]))),
        "quantile_huber_loss": lambda: wdist.quantile_huber_loss(
            f(pred), f(target), taus=f(np.linspace(0.1, 0.9, 5))),
    }


def _reversed_view(arr):
    """The same values, through a view with negative strides on every axis."""
    view = np.ascontiguousarray(arr[(slice(None, None, -1),) * arr.ndim])[
        (slice(None, None, -1),) * arr.ndim]
    assert all(s < 0 for s in view.strides) and np.array_equal(view, arr)
    return view


@pytest.mark.parametrize("name", sorted(_calls(np.copy)))
def test_negative_strides_give_the_contiguous_result(name):
    ref = _calls(np.copy)[name]()
    out = _calls(_reversed_view)[name]()
    assert torch.equal(out, ref)


@pytest.mark.parametrize("name", sorted(_calls(np.copy)))
def test_complex_inputs_are_a_type_error(name):
    with pytest.raises(TypeError, match="must hold real numbers, got complex"):
        _calls(lambda arr: arr * (1 + 1j))[name]()
    with pytest.raises(TypeError, match="must hold real numbers, got complex"):
        _calls(lambda arr: torch.tensor(arr, dtype=torch.complex128))[name]()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: wdist.sinkhorn(torch.ones(0, 3, 2), torch.ones(0, 4, 2)), "x is an empty batch"),
        (lambda: wdist.sinkhorn(torch.ones(1, 3, 2), torch.ones(0, 4, 2)), "y is an empty batch"),
        (lambda: wdist.wasserstein_1d(torch.ones(0, 3), torch.ones(0, 4)), "u_values"),
        (lambda: wdist.wasserstein_1d(torch.ones(2, 3), torch.ones(0, 4)), "v_values"),
        (lambda: wdist.gaussian_w2(torch.ones(0, 2), torch.ones(0, 2, 2), torch.ones(0, 2),
                                   torch.ones(0, 2, 2)), "mean1 is empty"),
        (lambda: wdist.gaussian_w2(torch.ones(0), torch.ones(0, 0), torch.ones(0),
                                   torch.ones(0, 0)), "mean1 is empty"),
        (lambda: wdist.quantile_huber_loss(torch.ones(0, 3), torch.ones(0, 4)),
         "pred is an empty batch"),
        (lambda: wdist.quantile_function(torch.ones(0, 2), torch.ones(0, 3), torch.ones(0, 3)),
         "cdf and sorted_values"),
        (lambda: wdist.emd(np.ones((3, 2)), np.ones((0, 2))), "y is empty"),
        (lambda: wdist.sliced_wasserstein(np.ones((0, 2)), np.ones((3, 2))), "x is empty"),
        (lambda: wdist.frechet_distance(np.ones((0, 2)), np.ones((3, 2))), "feats1 is empty"),
        (lambda: wdist.critic_loss(torch.nn.Linear(2, 1), torch.ones(0, 2), torch.ones(3, 2)),
         "at least one sample"),
    ],
)
def test_empty_batches_are_a_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(_calls(np.copy)))
def test_half_precision_is_computed_in_float32(name, half):
    """float16/bfloat16 inputs give the float32 result on the same (rounded) values."""
    rounded = _calls(lambda arr: torch.tensor(arr, dtype=half).float())[name]()
    out = _calls(lambda arr: torch.tensor(arr, dtype=half))[name]()
    assert out.dtype == torch.float32
    assert torch.equal(out, rounded)


def test_half_precision_gradients_reach_the_inputs():
    x = torch.randn(6, 2).half().requires_grad_(True)
    y = torch.randn(5, 2).half()
    for fn in (lambda: wdist.emd(x, y, p=2), lambda: wdist.sinkhorn(x, y, blur=0.5),
               lambda: wdist.sliced_wasserstein(x, y, seed=0)):
        x.grad = None
        fn().backward()
        assert x.grad.dtype == torch.float16 and torch.isfinite(x.grad).all()
        assert x.grad.abs().sum() > 0
    # half and float64 still do not mix silently
    with pytest.raises(TypeError, match="y has dtype torch.float16"):
        wdist.emd(torch.randn(3, 2, dtype=torch.float64), y)


# name -> the data arguments, which may be positional; every other parameter is keyword-only
DATA_ARGS = {
    "emd": ["x", "y", "a", "b"],
    "emd_from_cost": ["cost", "a", "b"],
    "sinkhorn": ["x", "y", "a", "b"],
    "sinkhorn_solve": ["x", "y", "a", "b"],
    "sinkhorn_from_cost": ["cost", "a", "b"],
    "sinkhorn_solve_from_cost": ["cost", "a", "b"],
    "SamplesLoss": ["loss"],
    "wasserstein_1d": ["u_values", "v_values", "u_weights", "v_weights"],
    "quantile_function": ["qs", "cdf", "sorted_values"],
    "sliced_wasserstein": ["x", "y", "a", "b"],
    "gaussian_w2": ["mean1", "cov1", "mean2", "cov2"],
    "frechet_distance": ["feats1", "feats2"],
    "quantile_huber_loss": ["pred", "target"],
    "quantile_midpoints": ["n"],
    "gradient_penalty": ["critic", "real", "fake"],
    "pair_penalty": ["critic", "real", "fake"],
    "critic_loss": ["critic", "real", "fake"],
    "generator_loss": ["critic", "fake"],
    "certified_w1": ["critic", "real", "fake"],
    "clip_weights_": ["module"],
    "spectral_normalize": ["module"],
    "WassersteinCritic": ["module", "lipschitz"],
    "WassersteinCritic.fit": ["self", "real", "fake"],
}


@pytest.mark.parametrize("name", sorted(DATA_ARGS))
def test_options_are_keyword_only(name):
    obj = wdist
    for part in name.split("."):
        obj = getattr(obj, part)
    params = inspect.signature(obj).parameters.values()
    positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == DATA_ARGS[name]
    assert all(p.kind is p.KEYWORD_ONLY for p in params if p.name not in DATA_ARGS[name])


def test_point_and_cost_twins_share_their_trailing_options():
    def options(fn):
        return [p.name for p in inspect.signature(fn).parameters.values()
                if p.kind is p.KEYWORD_ONLY]

    assert options(wdist.emd) == ["p"] + options(wdist.emd_from_cost)
    assert options(wdist.sinkhorn)[-2:] == ["return_plan", "return_potentials"]
    assert options(wdist.sinkhorn)[:-2] == options(wdist.sinkhorn_solve)
    assert options(wdist.sinkhorn_from_cost) == options(wdist.sinkhorn_solve_from_cost)
    shared = ["scaling", "tol", "max_iter"]
    assert [o for o in options(wdist.sinkhorn_solve) if o in shared] == shared
    assert [o for o in options(wdist.sinkhorn_from_cost) if o in shared] == shared
    with pytest.raises(TypeError):
        wdist.emd(np.ones((2, 1)), np.ones((2, 1)), None, None, 2)  # p is keyword-only
