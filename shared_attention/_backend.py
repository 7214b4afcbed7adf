"""Choosing between the PyTorch path and the Triton kernels.

``backend`` (an argument of the dispatching functions) or the ``ATTENTION_BACKEND`` environment
variable: ``"auto"`` (default) uses the kernels for CUDA tensors when Triton imports and the call is
supported, ``"torch"`` always uses PyTorch, ``"triton"`` always uses the kernels and raises
``ValueError`` when the call is not supported (on CPU tensors it needs ``TRITON_INTERPRET=1``, which
the tests use). Both paths compute the same function.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

import torch

BACKENDS = ("auto", "torch", "triton")


def resolve(backend: str | None) -> str:
    chosen = backend if backend is not None else os.environ.get("ATTENTION_BACKEND", "auto")
    if chosen not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} (argument or ATTENTION_BACKEND), got {chosen!r}")
    return chosen


def kernels(name: str) -> ModuleType | None:
    """``kernels.<name>`` if Triton is importable, else None (imported lazily: the core needs torch only)."""
    if importlib.util.find_spec("triton") is None:
        return None
    return importlib.import_module(f"kernels.{name}")


def use_triton(
    backend: str | None,
    module: str,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    why_not: str | None = None,
) -> ModuleType | None:
    """The kernel module to use for this call, or None for the PyTorch path.

    ``why_not`` is the caller's reason this call cannot run on the kernels (None when it can); the
    module's own ``supported(q, k, v)`` adds shape and dtype limits.
    """
    chosen = resolve(backend)
    if chosen == "torch":
        return None
    found = kernels(module)
    if found is not None and why_not is None and not found.supported(q, k, v):
        why_not = f"shapes/dtypes q {tuple(q.shape)} {q.dtype}, v {tuple(v.shape)} are outside the kernels' range"
    if chosen == "auto":
        return found if found is not None and q.is_cuda and why_not is None else None
    if found is None:
        raise ValueError("backend='triton' needs the triton package")
    if why_not is not None:
        raise ValueError(f"backend='triton' cannot run this call: {why_not}")
    if not q.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError("backend='triton' on CPU tensors needs TRITON_INTERPRET=1 (Triton's interpreter)")
    return found
