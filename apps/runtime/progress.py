"""Progress bars for long work (tqdm; silenced with WDIST_NO_PROGRESS=1, e.g. in tests)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tqdm import tqdm


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
    from tqdm.auto import (
        tqdm,  # here: wdist_apps.runtime imports this module eagerly (see __init__)
    )

    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("disable", os.environ.get("WDIST_NO_PROGRESS") == "1")
    return tqdm(iterable, **kwargs)
