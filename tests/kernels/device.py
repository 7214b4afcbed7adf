"""Where the kernel tests run: compiled on a CUDA GPU when there is one (fp32, fp16 and bf16), else in
Triton's interpreter on the CPU (tests/conftest.py sets TRITON_INTERPRET=1; the interpreter has no bf16).
This path imports torch, triton and the suite's core only, so it runs on a GPU machine without Ray,
MLflow or Biopython."""

from __future__ import annotations

import torch

ON_GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if ON_GPU else "cpu")
HALF_DTYPES = (torch.float16, torch.bfloat16) if ON_GPU else (torch.float16,)
DTYPES = (torch.float32, *HALF_DTYPES)
# Every autotune configuration in every dtype where it compiles (the GPU); the interpreter runs each
# configuration in fp32 and the half type in the option tests (it is ~50x slower per case).
CONFIG_DTYPES = DTYPES if ON_GPU else (torch.float32,)


def randn(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Seeded normal values drawn on the CPU (the same on every machine), rounded to ``dtype`` there and
    moved to the test device; references are taken from these rounded values."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype).to(DEVICE)
