"""Global settings changed for the length of a run, then restored to what they were before (not
to a hard-coded value): torch threads, CUDA math flags, wdist's input validation, default dtype."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def scoped_settings(*, threads: int | None = None, validation: bool | None = None,
                    cuda_fast_math: bool = False,
                    default_dtype: torch.dtype | None = None) -> Iterator[None]:
    """Set what is given inside the ``with`` block and restore the previous values after it.

    threads: ``torch.set_num_threads`` (``None`` or <= 0: unchanged).
    validation: ``wdist.set_validation`` (e.g. off on CUDA, where each check syncs the device).
    cuda_fast_math: cuDNN autotuning and TF32 matmuls / convolutions.
    default_dtype: ``torch.set_default_dtype``.
    """
    import wdist
    from wdist._checks import validation_enabled

    saved_threads = torch.get_num_threads()
    saved_validation = validation_enabled()
    saved_flags = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
                   torch.backends.cudnn.allow_tf32)
    saved_dtype = torch.get_default_dtype()
    try:
        if threads is not None and threads > 0:
            torch.set_num_threads(threads)
        if validation is not None:
            wdist.set_validation(validation)
        if cuda_fast_math:
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if default_dtype is not None:
            torch.set_default_dtype(default_dtype)
        yield
    finally:
        torch.set_num_threads(saved_threads)
        wdist.set_validation(saved_validation)
        (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = saved_flags
        torch.set_default_dtype(saved_dtype)
