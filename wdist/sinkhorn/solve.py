"""Backend choice and the two strategies over a list of problems (no argument checks here)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from wdist.sinkhorn import online
from wdist.sinkhorn.dense import KERNEL_RANGE, dense_sinkhorn, dense_softmin
from wdist.sinkhorn.loops import Softmin, Trace, epsilon_schedule, extrapolate_step, log_sinkhorn
from wdist.sinkhorn.problem import Problem, Settings, limit_potentials

# A factory of soft-mins for the online strategy: (x [B, n, d], y [B, m, d], p, chunk) -> softmin.
SoftminFactory = Callable[[torch.Tensor, torch.Tensor, float, int], Softmin]

DENSE_LIMIT = 2**28  # elements the dense strategy may hold (1 GB in float32)


def choose_backend(
    backend: str, problems: list[Problem], needs_grad: bool, p: float
) -> str:
    """``"auto"``: dense when what it holds fits in ``DENSE_LIMIT`` elements: with autograd the
    live costs of every problem, without one kernel buffer for the largest problem (twice that
    for ``p != 2``, whose cost is stored too)."""
    if backend != "auto":
        return backend
    sizes = [math.prod(pb.shape) for pb in problems]
    elems = sum(sizes) if needs_grad else max(sizes) * (1 if p == 2 else 2)
    return "dense" if elems <= DENSE_LIMIT else "online"


@dataclass
class Solution:
    """Potentials ``(f, g)`` per problem, what the loops reported, and the soft-mins of the
    first problem (for its plan's marginals)."""

    potentials: list[tuple[torch.Tensor, torch.Tensor]]
    traces: list[Trace]
    softmins: Callable[[], tuple[Softmin, Softmin]]


def solve(
    problems: list[Problem],
    settings: Settings,
    backend: str,
    needs_grad: bool,
    softmin: SoftminFactory | None = None,
) -> Solution:
    """Solve every problem in turn (they are independent) with the ``backend`` strategy; with
    ``needs_grad`` the last extrapolation runs after the loop with autograd on, and carries the
    envelope theorem's gradient to the points (or costs). ``softmin``: the online strategy's
    soft-min factory (default: the chunked / compiled one)."""
    traces = [Trace() for _ in problems]
    if settings.limit:
        for trace in traces:
            trace.converged = None if settings.tol is None else True
        return Solution([limit_potentials(pb) for pb in problems], traces,
                        lambda: _stored_softmins(problems[0]))
    with torch.no_grad():
        if backend == "dense":
            solved = _solve_dense(problems, settings, traces, extrapolate=not needs_grad)
            online_softmins = None
        else:
            solved, online_softmins = _solve_online(
                problems, settings, traces, not needs_grad, softmin
            )
    eps = settings.eps
    if needs_grad:  # the last extrapolation, with autograd on
        for i, pb in enumerate(problems):
            sm_xy, sm_yx = pb.live_softmins() if online_softmins is None else online_softmins[i]
            # the weights' gradient is the envelope theorem's direct term (in the value), not a
            # path through the soft-mins: those see detached weights
            solved[i] = extrapolate_step(
                sm_xy, sm_yx, pb.a.detach(), pb.b.detach(), *solved[i], eps,
                settings.damping(eps),
            )

    def first_softmins() -> tuple[Softmin, Softmin]:
        return _stored_softmins(problems[0]) if online_softmins is None else online_softmins[0]

    return Solution(solved, traces, first_softmins)


def _stored_softmins(pb: Problem) -> tuple[Softmin, Softmin]:
    cost = pb.cost_matrix().detach()
    return dense_softmin(cost), dense_softmin(cost.transpose(-1, -2))


def _solve_dense(
    problems: list[Problem], settings: Settings, traces: list[Trace], extrapolate: bool
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Kernel form, one ``n x m`` buffer shared by the problems."""
    first = problems[0]
    buf = first.a.new_empty(max(math.prod(pb.shape) for pb in problems))
    tol, p, blur = settings.tol, settings.p, float(settings.blur)
    solved = []
    for pb, trace in zip(problems, traces):
        shape = pb.shape
        gibbs = pb.gibbs(buf[: math.prod(shape)].view(shape))
        # Start where the costs need it: at eps >= max C / KERNEL_RANGE the kernel of zero
        # potentials is representable, and the levels above it only cost exps.
        top = settings.diameter or (max(gibbs.cost_max(), 0.0) / KERNEL_RANGE) ** (1 / p)
        eps_list = epsilon_schedule(p, float(top or blur), blur, float(settings.scaling))
        solved.append(
            dense_sinkhorn(
                gibbs, pb.a, pb.b, pb.sym, eps_list, settings.damping, tol,
                settings.max_iter, extrapolate, trace,
            )
        )
    return solved


def _solve_online(
    problems: list[Problem],
    settings: Settings,
    traces: list[Trace],
    extrapolate: bool,
    softmin: SoftminFactory | None,
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[tuple[Softmin, Softmin | None]]]:
    """Log domain on soft-mins that never store ``n x m`` (points only)."""
    first = problems[0]
    factory = softmin or online.softmin_factory(first.x)
    bsz, n, m = first.shape
    chunk = online.chunk_size(bsz, max(n, m), first.x.device)
    p, blur = settings.p, float(settings.blur)
    eps_list = epsilon_schedule(
        p, float(settings.diameter or settings.spread or blur), blur, float(settings.scaling)
    )
    max_iter = settings.max_iter if settings.tol is not None else 0
    solved, softmins = [], []
    for pb, trace in zip(problems, traces):
        # Each soft-min differentiates through its first argument only (GeomLoss's
        # convention): the extrapolation carries the gradient exactly once per point cloud.
        sm_xy = factory(pb.x, pb.y.detach(), p, chunk)
        sm_yx = None if pb.sym else factory(pb.y, pb.x.detach(), p, chunk)
        softmins.append((sm_xy, sm_yx))
        solved.append(
            log_sinkhorn(
                sm_xy, sm_yx, pb.a, pb.b, eps_list, settings.damping, settings.tol, max_iter,
                extrapolate=extrapolate, trace=trace,
            )
        )
    return solved, softmins
