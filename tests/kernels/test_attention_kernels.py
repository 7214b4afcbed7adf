"""The fused softmax/sigmoid Triton kernels, forward and gradients, against float64 references:
every configuration, causal and not, with and without ALiBi and padding, head dims 32/64/128, fp32 and
the half types, lengths that are not multiples of the blocks. Compiled on a GPU, interpreted on a CPU
(see tests/kernels/device.py)."""

from __future__ import annotations

import pytest
import torch

import shared_attention as sa
from kernels.attention import BWD_CONFIGS, CONFIGS, fused_attention

from ..shared_attention.reference import max_rel_err, sigmoid_ref, softmax_ref
from .device import CONFIG_DTYPES, DEVICE, DTYPES, HALF_DTYPES, randn

REFS = {"softmax": softmax_ref, "sigmoid": sigmoid_ref}
# fp32: the interpreter's dots are exact fp32, sums of <= 80 terms: ~1e-7 relative, bound 1e-5.
# fp16: inputs are fp16-exact (the reference uses the rounded values); the kernel rounds P to fp16
# before P·V (2^-11 relative) and the output to fp16: bound 5e-3; gradients add the rounding of dS
# (differences of rounded products): 2e-2. bf16 keeps 8 bits where fp16 keeps 11: 8x the fp16 bounds.
TOL = {torch.float32: (1e-5, 1e-4), torch.float16: (5e-3, 2e-2), torch.bfloat16: (4e-2, 1.6e-1)}


def _case(dtype, *, b=2, h=2, n_q=70, n_k=70, d=32, seed=0):
    return tuple(randn(b, h, n, d, seed=seed + i, dtype=dtype) for i, n in enumerate((n_q, n_k, n_k)))


def _run(score, causal, dtype, *, alibi, padding, fwd_config, bwd_config, n_q=70, n_k=70, d=32):
    q, k, v = _case(dtype, n_q=n_q, n_k=n_k, d=d)
    lengths = torch.tensor([n_k, n_k - 13], device=DEVICE) if padding else None
    slopes = torch.tensor([0.5, 0.125], device=DEVICE) if alibi else None
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    out = fused_attention(*leaves, score=score, causal=causal, key_lengths=lengths, alibi_slopes=slopes,
                          fwd_config=fwd_config, bwd_config=bwd_config)  # fmt: skip
    weight = randn(*out.shape, seed=99)
    (out.float() * weight).sum().backward()

    ref_leaves = [t.double().requires_grad_(True) for t in (q, k, v)]
    key_mask = None if lengths is None else torch.arange(n_k, device=DEVICE)[None] < lengths[:, None]
    bias = None if slopes is None else sa.alibi_bias(slopes.double(), n_q, n_k, symmetric=not causal,
                                                      dtype=torch.float64, device=DEVICE).unsqueeze(0)  # fmt: skip
    ref = REFS[score](*ref_leaves, causal=causal, key_mask=key_mask, bias=bias)
    (ref * weight.double()).sum().backward()
    out_tol, grad_tol = TOL[dtype]
    assert out.dtype == dtype
    assert max_rel_err(out, ref) < out_tol
    for got, want, name in zip(leaves, ref_leaves, "qkv"):
        assert torch.isfinite(got.grad).all()
        assert max_rel_err(got.grad, want.grad) < grad_tol, f"d{name}"


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("config", range(len(CONFIGS)))
@pytest.mark.parametrize("dtype", CONFIG_DTYPES)
def test_every_forward_config(score, causal, config, dtype):
    _run(
        score,
        causal,
        dtype,
        alibi=True,
        padding=True,
        fwd_config=CONFIGS[config],
        bwd_config=BWD_CONFIGS[0],
    )


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("config", range(len(BWD_CONFIGS)))
@pytest.mark.parametrize("dtype", CONFIG_DTYPES)
def test_every_backward_config(score, causal, config, dtype):
    _run(
        score,
        causal,
        dtype,
        alibi=True,
        padding=True,
        fwd_config=CONFIGS[0],
        bwd_config=BWD_CONFIGS[config],
    )


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("alibi", [False, True])
@pytest.mark.parametrize("padding", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_options_and_dtypes(score, causal, alibi, padding, dtype):
    _run(score, causal, dtype, alibi=alibi, padding=padding, fwd_config=CONFIGS[3], bwd_config=BWD_CONFIGS[1])


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
@pytest.mark.parametrize("head_dim", [32, 64, 128])
@pytest.mark.parametrize("dtype", [torch.float32, HALF_DTYPES[-1]])
def test_head_dims(score, head_dim, dtype):
    """The head dims the models use, causal with ALiBi and padding."""
    _run(score, True, dtype, alibi=True, padding=True, fwd_config=CONFIGS[0], bwd_config=BWD_CONFIGS[0], d=head_dim)


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
@pytest.mark.parametrize("head_dim", [32, 64])
def test_cross_attention_lengths(score, head_dim):
    """n_q != n_k (queries aligned with the end of the keys), odd lengths."""
    _run(score, True, torch.float32, alibi=False, padding=True, fwd_config=CONFIGS[0],
         bwd_config=BWD_CONFIGS[0], n_q=37, n_k=101, d=head_dim)  # fmt: skip


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
def test_future_keys_do_not_change_past_outputs(score):
    q, k, v = _case(torch.float32, n_q=80, n_k=80)
    out = fused_attention(q, k, v, score=score, causal=True, fwd_config=CONFIGS[3])
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 50:] += 3.0
    v2[:, :, 50:] -= 3.0
    out2 = fused_attention(q, k2, v2, score=score, causal=True, fwd_config=CONFIGS[3])
    assert torch.equal(out[:, :, :50], out2[:, :, :50])
    assert not torch.allclose(out[:, :, 50:], out2[:, :, 50:])


def test_rows_without_keys_are_zero_and_finite():
    """A sequence of length 0 (all padding): zero output, finite zero gradients."""
    q, k, v = (t.requires_grad_(True) for t in _case(torch.float32, n_q=20, n_k=20))
    out = fused_attention(q, k, v, key_lengths=torch.tensor([20, 0], device=DEVICE), fwd_config=CONFIGS[3],
                          bwd_config=BWD_CONFIGS[1])  # fmt: skip
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.equal(k.grad[1], torch.zeros_like(k.grad[1]))


def test_unsupported_calls_are_refused():
    q, k, v = _case(torch.float32, d=24)
    with pytest.raises(ValueError, match="head_dim must be one of"):
        fused_attention(q, k, v)
    q, k, v = _case(torch.float32)
    with pytest.raises(ValueError, match="score must be one of"):
        fused_attention(q, k, v, score="relu")
