"""Warnings that point at the user's line, not into wdist."""

from __future__ import annotations

import os
import sys
import warnings

_WDIST_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def caller_level() -> int:
    """``stacklevel`` of the first frame outside wdist: warnings point at the user's call."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_WDIST_DIR):
        frame, level = frame.f_back, level + 1
    return level


def warn_not_converged(moved: float, tol: float, max_iter: int) -> None:
    warnings.warn(
        f"sinkhorn did not reach tol={tol:g} within max_iter={max_iter} iterations at the final "
        f"blur (the potentials still moved by {moved:.2g} * eps in the last one; the test asks "
        f"for {tol:g} * eps): the plan's marginals and the value are less accurate than tol "
        "says. Raise max_iter, or use a larger blur or tol.",
        RuntimeWarning,
        stacklevel=caller_level(),
    )
