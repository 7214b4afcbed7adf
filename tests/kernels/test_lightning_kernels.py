"""The Triton lightning attention (forward and the three-pass backward) against the float64 naive
reference: every configuration, with padding, the head dims the models use (the genomics lightning
model's 32 and 64, and 16/128), fp32 and the half types, lengths not multiples of the block. Compiled on
a GPU, interpreted on a CPU (see tests/kernels/device.py)."""

from __future__ import annotations

import pytest
import torch

from kernels.lightning import CONFIGS, lightning_attention

from ..shared_attention.reference import lightning_ref, max_rel_err
from .device import CONFIG_DTYPES, DEVICE, DTYPES, randn

# fp32: exact fp32 dots in the interpreter, decays computed in fp32: ~1e-7 relative, bound 1e-5.
# fp16: scores and the carried state products are rounded to fp16 inputs of the dots: 5e-3 / 2e-2;
# bf16 keeps 8 bits where fp16 keeps 11: 8x those bounds.
TOL = {torch.float32: (1e-5, 1e-4), torch.float16: (5e-3, 2e-2), torch.bfloat16: (4e-2, 1.6e-1)}


def _run(config, dtype, *, padding, n=75, d=16, e=32):
    q, k, v = (randn(2, 2, n, x, seed=i, dtype=dtype) for i, x in enumerate((d, d, e)))
    slopes = torch.tensor([0.05, 0.7], device=DEVICE)
    lengths = torch.tensor([n, n - 17], device=DEVICE) if padding else None
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    out = lightning_attention(*leaves, slopes, key_lengths=lengths, config=config)
    weight = randn(*out.shape, seed=99)
    (out.float() * weight).sum().backward()
    ref_leaves = [t.double().requires_grad_(True) for t in (q, k, v)]
    key_mask = None if lengths is None else torch.arange(n, device=DEVICE)[None] < lengths[:, None]
    ref = lightning_ref(*ref_leaves, slopes, key_mask=key_mask)
    (ref * weight.double()).sum().backward()
    out_tol, grad_tol = TOL[dtype]
    assert out.dtype == dtype
    assert max_rel_err(out, ref) < out_tol
    for got, want, name in zip(leaves, ref_leaves, "qkv"):
        assert max_rel_err(got.grad, want.grad) < grad_tol, f"d{name}"


@pytest.mark.parametrize("config", range(len(CONFIGS)))
@pytest.mark.parametrize("padding", [False, True])
@pytest.mark.parametrize("dtype", CONFIG_DTYPES)
def test_every_config(config, padding, dtype):
    _run(CONFIGS[config], dtype, padding=padding)


@pytest.mark.parametrize("padding", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes(padding, dtype):
    _run(CONFIGS[2], dtype, padding=padding)


@pytest.mark.parametrize("dims", [(32, 32), (64, 64), (128, 128), (16, 64)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_head_dims(dims, dtype):
    d, e = dims
    _run(CONFIGS[0], dtype, padding=True, n=70, d=d, e=e)


def test_future_tokens_do_not_change_past_outputs():
    q, k, v = (randn(1, 2, 90, 16, seed=i) for i in range(3))
    slopes = torch.tensor([0.1, 0.3], device=DEVICE)
    out = lightning_attention(q, k, v, slopes, config=CONFIGS[2])
    k2, v2, q2 = k.clone(), v.clone(), q.clone()
    k2[:, :, 60:] += 2
    v2[:, :, 60:] -= 2
    q2[:, :, 60:] *= 3
    assert torch.equal(lightning_attention(q2, k2, v2, slopes, config=CONFIGS[2])[:, :, :60], out[:, :, :60])


def test_long_sequence_no_overflow():
    """Strong decay over 2k tokens: every exponent is <= 0, so nothing overflows."""
    q, k, v = (randn(1, 1, 2048, 16, seed=i) for i in range(3))
    out = lightning_attention(q, k, v, torch.tensor([6.0], device=DEVICE), config=CONFIGS[3])
    assert torch.isfinite(out).all()
