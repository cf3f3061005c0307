r"""Entropic optimal transport: log-domain Sinkhorn with ε-scaling, and the Sinkhorn divergence.

Two strategies, chosen by size, solve the same problem (GeomLoss's symmetric scheme under
ε-scaling, Feydy et al. 2019, then plain Sinkhorn at the final ε until the potentials settle):

- ``dense`` (:mod:`~wdist.sinkhorn.dense`): every iteration in kernel form with absorbed
  potentials (Schmitzer 2019), two mat-vecs per iteration; falls back to the log domain where
  the kernel is not representable.
- ``online`` (:mod:`~wdist.sinkhorn.online`): never stores an ``n x m`` matrix; the log-domain
  loop runs on soft-mins that recompute the costs (chunked, or ``torch.compile``'d on CUDA).

The package reads top-down: :mod:`~wdist.sinkhorn.api` checks the arguments and builds the
problem records (:mod:`~wdist.sinkhorn.problem`), :mod:`~wdist.sinkhorn.solve` picks the backend
and runs one loop per strategy (:mod:`~wdist.sinkhorn.loops`, written against a soft-min callable
``softmin(eps, h) -> f``), and :mod:`~wdist.sinkhorn.value` assembles the value from the
potentials. Gradients follow the envelope theorem: the loop runs without autograd, and one last
extrapolation step at the final ε carries the gradient to ``x``, ``y``, ``a`` and ``b``.
"""

from wdist.sinkhorn.api import (
    sinkhorn,
    sinkhorn_from_cost,
    sinkhorn_solve,
    sinkhorn_solve_from_cost,
)
from wdist.sinkhorn.loops import epsilon_schedule
from wdist.sinkhorn.online import (  # noqa: F401 - names benchmarks reach through the package
    _chunk_size,
    _online_softmin,
    _OnlineSoftmin,
)
from wdist.sinkhorn.result import SinkhornResult

__all__ = [
    "SinkhornResult",
    "epsilon_schedule",
    "sinkhorn",
    "sinkhorn_from_cost",
    "sinkhorn_solve",
    "sinkhorn_solve_from_cost",
]
