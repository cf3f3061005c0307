"""wdist: fast, differentiable Wasserstein distances in PyTorch (CPU or GPU, batched).

Every function returns an optimal-transport **cost** with ground cost ``|x - y|^p``, i.e.
:math:`W_p^p` (for ``p = 1``, :math:`W_1` itself); ``gaussian_w2`` returns :math:`W_2^2`.
"""

from wdist._checks import set_validation
from wdist.critic import (
    WassersteinCritic,
    certified_w1,
    clip_weights_,
    critic_loss,
    generator_loss,
    gradient_penalty,
    pair_penalty,
    spectral_normalize,
)
from wdist.exact import emd, emd_from_cost
from wdist.gaussian import frechet_distance, gaussian_w2
from wdist.losses import quantile_huber_loss, quantile_midpoints
from wdist.one_d import quantile_function, wasserstein_1d
from wdist.samples_loss import SamplesLoss
from wdist.sinkhorn import (
    SinkhornResult,
    sinkhorn,
    sinkhorn_from_cost,
    sinkhorn_solve,
    sinkhorn_solve_from_cost,
)
from wdist.sliced import sliced_wasserstein

__version__ = "0.1.0"

__all__ = [
    "SamplesLoss",
    "SinkhornResult",
    "WassersteinCritic",
    "certified_w1",
    "clip_weights_",
    "critic_loss",
    "emd",
    "emd_from_cost",
    "frechet_distance",
    "gaussian_w2",
    "generator_loss",
    "gradient_penalty",
    "pair_penalty",
    "quantile_function",
    "quantile_huber_loss",
    "quantile_midpoints",
    "set_validation",
    "sinkhorn",
    "sinkhorn_from_cost",
    "sinkhorn_solve",
    "sinkhorn_solve_from_cost",
    "sliced_wasserstein",
    "spectral_normalize",
    "wasserstein_1d",
]
