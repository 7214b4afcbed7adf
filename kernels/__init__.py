"""Triton kernels behind the attention core's fast paths on CUDA.

Imports torch and triton only. The core (``shared_attention``) calls in here lazily, on CUDA, when
Triton imports and the shapes are supported; everywhere else it runs its PyTorch path, which gives the
same results.
"""

import contextlib

_poison_depth = 0  # process-wide, not a context variable: autograd runs CUDA backward kernels in its own thread


@contextlib.contextmanager
def poisoned_outputs():
    """Within the block every kernel output starts as NaN instead of uninitialised memory, so an element a
    kernel fails to write shows up (the kernel benchmark checks correctness under it)."""
    global _poison_depth
    _poison_depth += 1
    try:
        yield
    finally:
        _poison_depth -= 1


def outputs_poisoned() -> bool:
    return _poison_depth > 0
