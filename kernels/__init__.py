"""Triton kernels behind the attention core's fast paths on CUDA.

Imports torch and triton only. The core (``shared_attention``) calls in here lazily, on CUDA, when
Triton imports and the shapes are supported; everywhere else it runs its PyTorch path, which gives the
same results.
"""
