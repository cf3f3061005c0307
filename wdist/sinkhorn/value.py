r"""The value assembled from the potentials (GeomLoss's ``sinkhorn_cost``), and the plan.

Balanced: :math:`\mathrm{OT}_\varepsilon = \langle a, f \rangle + \langle b, g \rangle` at the
optimum. Unbalanced (:math:`\rho = \text{reach}^p`, generalised KL), the dual value

.. math::
    \rho \langle a, 1 - e^{-f/\rho} \rangle + \rho \langle b, 1 - e^{-g/\rho} \rangle
    - \varepsilon \langle a \otimes b, e^{(f \oplus g - C)/\varepsilon} - 1 \rangle
    = (\rho + \tfrac\varepsilon2) \big(\langle a, 1 - e^{-f/\rho} \rangle
      + \langle b, 1 - e^{-g/\rho} \rangle\big) + \varepsilon (m_a m_b - \tfrac{m_a + m_b}2)

at the optimum (the plan's mass is :math:`\langle a, e^{-f/\rho}\rangle = \langle b,
e^{-g/\rho}\rangle`). The debiased divergence of Séjourné et al. (2019),
:math:`S = \mathrm{OT}(a, b) - \frac12 \mathrm{OT}(a, a) - \frac12 \mathrm{OT}(b, b)
+ \frac\varepsilon2 (m_a - m_b)^2`, drops the mass terms (they cancel).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class _UnbalancedWeight(torch.autograd.Function):
    r"""``(rho + eps/2) t`` forward, ``(rho + eps) * grad`` backward. The unbalanced dual value is
    :math:`(\rho + \varepsilon/2)(\langle a, 1 - e^{-f/\rho}\rangle + \langle b, 1 -
    e^{-g/\rho}\rangle)` at the optimum (plus mass terms), but its derivatives (envelope theorem
    on the dual objective, where the plan's mass term is eliminated) carry
    :math:`\rho + \varepsilon` (Séjourné et al. 2019; GeomLoss's ``UnbalancedWeight``)."""

    @staticmethod
    def forward(ctx, t, rho: float, eps: float):
        ctx.scale = rho + eps
        return (rho + eps / 2) * t

    @staticmethod
    def backward(ctx, grad):
        return ctx.scale * grad, None, None


class _MassTerm(torch.autograd.Function):
    r"""The dual value's mass terms that ``_UnbalancedWeight``'s form leaves out:
    :math:`\varepsilon (m_a m_b - (m_a + m_b) / 2)` (zero for unit masses), with the envelope
    theorem's derivatives :math:`\varepsilon (m_b - 1)` in :math:`m_a` and
    :math:`\varepsilon (m_a - 1)` in :math:`m_b` (what completes ``_UnbalancedWeight``'s
    :math:`(\rho + \varepsilon)(1 - e^{-f/\rho})` to the exact gradient). In the debiased
    divergence these terms cancel (Séjourné et al. 2019)."""

    @staticmethod
    def forward(ctx, mass_a, mass_b, eps: float):
        ctx.save_for_backward(mass_a, mass_b)
        ctx.eps = eps
        return eps * (mass_a * mass_b - 0.5 * (mass_a + mass_b))

    @staticmethod
    def backward(ctx, grad):
        mass_a, mass_b = ctx.saved_tensors
        return ctx.eps * grad * (mass_b - 1), ctx.eps * grad * (mass_a - 1), None


def _dot(w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (w * v).sum(-1)


def dual_value(
    a: torch.Tensor,
    b: torch.Tensor,
    potentials: list[tuple[torch.Tensor, torch.Tensor]],
    eps: float,
    rho: float | None,
    *,
    dot: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = _dot,
) -> torch.Tensor:
    """``[B]`` values from ``[(f_ba, g_ab)]`` (OT_eps) or, debiased, ``[(f_ba, g_ab), (f_aa, _),
    (g_bb, _)]`` (the divergence, clamped at 0: only round-off of a converged solve dips below).
    ``dot(w, v)``: the sum over the points of ``w * v`` (``wdist.distributed`` sums over the
    ranks too).
    """
    (f_ba, g_ab), *sym = potentials
    debias = bool(sym)
    if rho is None:
        cost = dot(a, f_ba) + dot(b, g_ab)
        if debias:
            cost = cost - dot(a, sym[0][0]) - dot(b, sym[1][0])
    elif debias:
        f_aa, g_bb = sym[0][0], sym[1][0]
        cost = _UnbalancedWeight.apply(
            dot(a, torch.exp(-f_aa / rho) - torch.exp(-f_ba / rho))
            + dot(b, torch.exp(-g_bb / rho) - torch.exp(-g_ab / rho)),
            rho, eps,
        )
    else:
        cost = _UnbalancedWeight.apply(
            dot(a, 1 - torch.exp(-f_ba / rho)) + dot(b, 1 - torch.exp(-g_ab / rho)), rho, eps
        ) + _MassTerm.apply(dot(a, torch.ones_like(a)), dot(b, torch.ones_like(b)), eps)
    return cost.clamp_min(0) if debias else cost


def plan_from_potentials(
    f: torch.Tensor, g: torch.Tensor, cost: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    r""":math:`P_{ij} = a_i b_j e^{(f_i + g_j - C_{ij}) / \varepsilon}`, ``[B, n, m]``."""
    plan = torch.exp((f.unsqueeze(-1) + g.unsqueeze(-2) - cost) / eps)
    return plan * a.unsqueeze(-1) * b.unsqueeze(-2)
