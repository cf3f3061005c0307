"""Input validation for every public function: clear errors that name the argument.

Value checks (NaN/inf, negative mass) need a device sync; they can be switched off for hot training
loops with :func:`set_validation` (as with torch.distributions' ``set_default_validate_args``).
Shape, dtype and device checks always run: they are free.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

_VALIDATE = True


class set_validation:  # noqa: N801 - a function to its callers, like torch.set_grad_enabled
    """Turn the value checks (finite inputs, non-negative weights, a device sync each on CUDA)
    on or off globally; as a context manager, only inside the ``with`` block::

        wdist.set_validation(False)          # from here on
        with wdist.set_validation(False):    # in a hot loop whose inputs are valid by design
            ...
    """

    def __init__(self, enabled: bool) -> None:
        global _VALIDATE
        self.previous, _VALIDATE = _VALIDATE, bool(enabled)

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        global _VALIDATE
        _VALIDATE = self.previous


def validation_enabled() -> bool:
    return _VALIDATE


_HALF = (torch.float16, torch.bfloat16)


def as_tensor(
    x: Any, name: str, like: torch.Tensor | None = None, *, check_finite: bool = True
) -> torch.Tensor:
    """Convert ``x`` (tensor, numpy array, list) to a real floating tensor; check it is finite
    (unless ``check_finite=False``: a caller that checks several inputs with one sync).

    Integers become the default float dtype (or ``like``'s). float16 / bfloat16 are promoted to
    float32: the costs and the solvers need its range and precision (``torch.autocast`` runs
    distances and reductions in float32 too), so results come back in float32 and gradients
    flow back to the half-precision input. Complex numbers are a ``TypeError`` (dropping the
    imaginary part would give a silent wrong number). numpy views with negative strides
    (``a[::-1]``) are copied, since torch cannot wrap them."""
    if x is None:
        raise TypeError(f"{name} must be an array or tensor, got None")
    if not isinstance(x, torch.Tensor):
        try:
            arr = np.asarray(x)
        except Exception as err:  # pragma: no cover - exotic inputs
            raise TypeError(f"{name} must be array-like, got {type(x).__name__}") from err
        if np.iscomplexobj(arr):
            raise TypeError(f"{name} must hold real numbers, got complex dtype {arr.dtype}")
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
        if any(stride < 0 for stride in arr.strides):
            arr = arr.copy()
        dtype = like.dtype if like is not None else None
        device = like.device if like is not None else None
        if dtype is None and not np.issubdtype(arr.dtype, np.floating):
            dtype = torch.get_default_dtype()
        x = torch.as_tensor(arr, dtype=dtype, device=device)
    if x.is_complex():
        raise TypeError(f"{name} must hold real numbers, got complex dtype {x.dtype}")
    given = x.dtype
    if x.dtype in _HALF:
        x = x.float()
    elif not x.is_floating_point():
        x = x.to(like.dtype if like is not None else torch.get_default_dtype())
    if like is not None:
        if x.device != like.device:
            raise TypeError(
                f"{name} is on {x.device} but the other inputs are on {like.device}; "
                "move them to one device"
            )
        if x.dtype != like.dtype:
            raise TypeError(f"{name} has dtype {given} but the other inputs have {like.dtype}")
    if check_finite and _VALIDATE and x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def check_points(x: torch.Tensor, name: str, batched: bool = False) -> torch.Tensor:
    """Point clouds: ``[n, d]`` (or ``[B, n, d]`` when ``batched``); 1-D ``[n]`` means ``d = 1``."""
    if x.dim() == 1:
        x = x[:, None]
    allowed = (2, 3) if batched else (2,)
    if x.dim() not in allowed:
        shape = "[n, d] or [B, n, d]" if batched else "[n, d]"
        raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
    if x.dim() == 3 and x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}): B must be >= 1")
    if x.shape[-2] == 0:
        raise ValueError(f"{name} is empty: it needs at least one point")
    if x.shape[-1] == 0:
        raise ValueError(f"{name} has zero features (shape {tuple(x.shape)})")
    return x


def check_same_dim(x: torch.Tensor, y: torch.Tensor, xname: str = "x", yname: str = "y") -> None:
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(
            f"{xname} and {yname} must have the same number of features (last dim), "
            f"got {x.shape[-1]} and {y.shape[-1]}"
        )


def check_clouds(x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Two point clouds ``[n, d]``, ``[m, d]`` on one dtype and device, with the same ``d``."""
    x = check_points(as_tensor(x, "x"), "x")
    y = check_points(as_tensor(y, "y", like=x), "y")
    check_same_dim(x, y)
    return x, y


def check_weights(
    w: Any, name: str, shape: Sequence[int], like: torch.Tensor, normalize: bool = True
) -> torch.Tensor:
    """Weights of shape ``shape`` (uniform if None), non-negative, positive total mass."""
    shape = tuple(shape)
    if w is None:
        return torch.full(shape, 1.0 / shape[-1], dtype=like.dtype, device=like.device)
    w = as_tensor(w, name, like=like)
    if tuple(w.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(w.shape)}")
    if _VALIDATE:
        if bool((w < 0).any()):
            raise ValueError(f"{name} has negative entries: weights must be >= 0")
        if bool((w.sum(-1) <= 0).any()):
            raise ValueError(f"{name} has zero total mass: weights must sum to a positive number")
    return w / w.sum(-1, keepdim=True) if normalize else w


def _is_real(value: Any) -> bool:
    """A real scalar: python or numpy int/float (``numbers.Real``), never a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_p(p: float) -> float:
    if not _is_real(p):
        raise TypeError(f"p must be a number >= 1, got {p!r}")
    if not math.isfinite(p) or p < 1:
        raise ValueError(f"p must be a finite number >= 1, got {p!r}")
    return float(p)


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """A python or numpy integer (not a bool) ``>= minimum``."""
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_seed(seed: Any) -> int | None:
    """A random seed: None or a python/numpy integer (not a bool)."""
    if seed is None:
        return None
    if not isinstance(seed, numbers.Integral) or isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    return int(seed)


def check_nonnegative(value: Any, name: str) -> float:
    """A finite real number ``>= 0``."""
    if not _is_real(value):
        raise TypeError(f"{name} must be a number >= 0, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_psd(c: torch.Tensor, name: str) -> None:
    """Symmetric ``[..., d, d]`` matrices must be positive semi-definite up to round-off: the
    smallest eigenvalue may not fall below ``-tol * max|eigenvalue|`` with
    ``tol = 100 d eps(dtype)`` (a value check: skipped when validation is off)."""
    if not _VALIDATE or c.numel() == 0:
        return
    with torch.no_grad():
        try:
            evals = torch.linalg.eigvalsh(c.detach())
        except torch.linalg.LinAlgError as err:
            raise ValueError(
                f"{name}: the eigendecomposition failed (NaN or huge entries?)"
            ) from err
        finfo = torch.finfo(c.dtype)
        scale = evals.abs().amax(-1).clamp_min(finfo.tiny)
        tol = 100 * c.shape[-1] * finfo.eps
        worst = evals[..., 0] / scale
        if bool((worst < -tol).any()):
            raise ValueError(
                f"{name} must be positive semi-definite, but has an eigenvalue of "
                f"{float(evals[..., 0].min()):.3g} (relative {float(worst.min()):.3g})"
            )


def check_cost_range(
    diameter: float, p: float, dtype: torch.dtype, limit: float | None = None
) -> None:
    """The largest ground cost ``diameter^p`` must stay below ``limit`` (default: a quarter of
    ``dtype``'s largest number)."""
    try:
        big = diameter**p
    except OverflowError:
        big = math.inf
    if not math.isfinite(big) or big > (limit or torch.finfo(dtype).max / 4):
        raise ValueError(
            f"the ground cost |x - y|^p overflows {dtype} (point spread {diameter:.3g}, p={p}): "
            "rescale x and y"
        )


def point_spread(
    *clouds: torch.Tensor, finite: Sequence[tuple[str, torch.Tensor]] = ()
) -> float:
    """Diagonal of the bounding box of all the points (an upper bound on their distances).
    ``finite``: ``(name, flag)`` pairs of 0-dim tensors (``torch.isfinite(x).all()``, taken
    before any arithmetic on ``x``), read in the same host sync: a False flag is a ValueError
    naming the input."""
    with torch.no_grad():  # per-cloud min / max: no copy of the points
        lo, hi = zip(*(torch.aminmax(c.reshape(-1, c.shape[-1]), dim=0) for c in clouds))
        low, high = torch.stack(lo).amin(0), torch.stack(hi).amax(0)
        spread = (high.double() - low.double()).norm()
        if not finite:
            return float(spread)
        spread, *flags = torch.stack([spread] + [f.double() for _, f in finite]).tolist()
    for (name, _), ok in zip(finite, flags):
        if not ok:
            raise ValueError(f"{name} contains NaN or inf")
    return spread


def check_positive(value: Any, name: str, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value
