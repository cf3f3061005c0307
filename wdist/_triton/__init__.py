"""Fused Triton kernels (CUDA; the CPU through Triton's interpreter). Importing this package does
not import triton: that happens on the first kernel launch."""

from wdist._triton.softmin import TRITON_MAX_DIM, triton_available, triton_softmin

__all__ = ["TRITON_MAX_DIM", "triton_available", "triton_softmin"]
