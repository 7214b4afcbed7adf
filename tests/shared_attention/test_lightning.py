"""Lightning (decayed linear) attention: chunked == recurrent == naive, streaming state, non-causal form,
masks, gradients, no overflow at long lengths, bad arguments."""

from __future__ import annotations

import pytest
import torch

import shared_attention as sa

from .reference import lightning_ref, max_rel_err

# fp32 chunked sums of <= 40 terms against fp64 loops; the decay products are exact to ~1e-7.
FP32_REL = 1e-5
GRAD_REL = 1e-4


def _inputs(b=2, h=4, n=23, d=8, e=6):
    return torch.randn(b, h, n, d), torch.randn(b, h, n, d), torch.randn(b, h, n, e)


@pytest.mark.parametrize("n", [1, 7, 16, 23, 40])
@pytest.mark.parametrize("block", [1, 4, 16, 64])
def test_chunked_matches_naive_and_recurrent(n, block):
    q, k, v = _inputs(n=n)
    slopes = sa.alibi_slopes(4)
    chunked = sa.lightning_attention(q, k, v, slopes, block_size=block)
    recurrent = sa.lightning_attention_recurrent(q, k, v, slopes)
    naive = lightning_ref(q, k, v, slopes)
    assert max_rel_err(chunked, naive) < FP32_REL
    assert max_rel_err(recurrent, naive) < FP32_REL


@pytest.mark.parametrize("block", [4, 16])
def test_gradients_match_reference(block):
    q, k, v = _inputs(b=1, h=2, n=19)
    slopes = torch.tensor([0.05, 0.7])
    weight = torch.randn(1, 2, 19, 6)
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    (sa.lightning_attention(*leaves, slopes, block_size=block) * weight).sum().backward()
    ref_leaves = [t.double().requires_grad_(True) for t in (q, k, v)]
    (lightning_ref(*ref_leaves, slopes) * weight.double()).sum().backward()
    for got, want, label in zip(leaves, ref_leaves, "qkv"):
        assert max_rel_err(got.grad, want.grad) < GRAD_REL, f"d{label}"


def test_state_carries_across_segments_and_into_decoding():
    """Run the first part chunked, continue chunked from its state, then decode token by token."""
    q, k, v = _inputs(n=30)
    slopes = sa.alibi_slopes(4)
    full = sa.lightning_attention(q, k, v, slopes, block_size=8)
    first, state = sa.lightning_attention(
        q[:, :, :13], k[:, :, :13], v[:, :, :13], slopes, block_size=8, return_state=True
    )
    second, state = sa.lightning_attention(
        q[:, :, 13:25],
        k[:, :, 13:25],
        v[:, :, 13:25],
        slopes,
        block_size=8,
        initial_state=state,
        return_state=True,
    )
    steps = []
    for t in range(25, 30):
        o_t, state = sa.lightning_step(q[:, :, t], k[:, :, t], v[:, :, t], state, slopes)
        steps.append(o_t)
    stitched = torch.cat([first, second, torch.stack(steps, dim=2)], dim=2)
    assert max_rel_err(stitched, full) < FP32_REL
    _, recurrent_state = sa.lightning_attention_recurrent(q, k, v, slopes, return_state=True)
    assert max_rel_err(state, recurrent_state) < FP32_REL


def test_final_state_with_partial_last_block():
    q, k, v = _inputs(n=21)
    slopes = sa.alibi_slopes(4)
    _, chunked_state = sa.lightning_attention(q, k, v, slopes, block_size=8, return_state=True)
    _, recurrent_state = sa.lightning_attention_recurrent(q, k, v, slopes, return_state=True)
    assert max_rel_err(chunked_state, recurrent_state) < FP32_REL


def test_noncausal_form():
    q, k, v = _inputs(n=17)
    slopes = sa.alibi_slopes(4)
    out = sa.lightning_attention(q, k, v, slopes, causal=False, block_size=5)
    assert max_rel_err(out, lightning_ref(q, k, v, slopes, causal=False)) < FP32_REL
    # zero decay: plain linear attention Q (Kᵀ V)
    zero = torch.zeros(4)
    plain = sa.lightning_attention(q, k, v, zero, causal=False)
    assert max_rel_err(plain, q @ (k.transpose(-1, -2) @ v)) < FP32_REL


def test_key_mask_removes_padding_exactly():
    q, k, v = _inputs(b=2, n=12)
    key_mask = torch.ones(2, 12, dtype=torch.bool)
    key_mask[0, :4] = False  # left padding
    key_mask[1, 9:] = False
    slopes = sa.alibi_slopes(4)
    out = sa.lightning_attention(q, k, v, slopes, key_mask=key_mask, block_size=4)
    assert max_rel_err(out, lightning_ref(q, k, v, slopes, key_mask=key_mask)) < FP32_REL


def test_causality():
    q, k, v = _inputs(n=32)
    out = sa.lightning_attention(q, k, v, block_size=8)
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    k2[:, :, 20:] += 4.0
    v2[:, :, 20:] -= 4.0
    q2[:, :, 20:] *= 3.0
    out2 = sa.lightning_attention(q2, k2, v2, block_size=8)
    assert torch.equal(out[:, :, :20], out2[:, :, :20])


def test_long_sequence_stays_finite():
    """Exponents are never positive, so strong decay over 8k tokens neither overflows nor NaNs."""
    n = 8192
    q, k, v = (torch.randn(1, 2, n, 16) for _ in range(3))
    slopes = torch.tensor([1.0, 8.0])  # λ^n underflows to 0 long before the end
    out = sa.lightning_attention(q, k, v, slopes, block_size=256)
    assert torch.isfinite(out).all()
    tail = slice(n - 300, n)
    expected = lightning_ref(q[:, :, tail], k[:, :, tail], v[:, :, tail], slopes)[:, :, -50:]
    # with decay ≥ e^-1 per step, tokens 250+ steps back contribute < e^-250: the tail alone suffices
    assert max_rel_err(out[:, :, -50:], expected) < FP32_REL


def test_fp16_inputs_accumulate_in_fp32():
    q, k, v = _inputs(n=40)
    out16 = sa.lightning_attention(q.half(), k.half(), v.half(), block_size=16)
    assert out16.dtype == torch.float16
    ref = lightning_ref(q.half().float(), k.half().float(), v.half().float(), sa.alibi_slopes(4))
    # inputs are exact in fp16 here; only the final cast rounds: 2^-11 relative
    assert max_rel_err(out16.float(), ref) < 1e-3


def test_bad_arguments():
    q, k, v = _inputs(n=8)
    with pytest.raises(ValueError, match="slopes must have one value per head"):
        sa.lightning_attention(q, k, v, torch.ones(3))
    with pytest.raises(ValueError, match="slopes must be finite and >= 0"):
        sa.lightning_attention(q, k, v, -torch.ones(4))
    with pytest.raises(ValueError, match="q and k must have the same seq"):
        sa.lightning_attention(q, k[:, :, :4], v[:, :, :4])
    with pytest.raises(ValueError, match="block_size"):
        sa.lightning_attention(q, k, v, block_size=0)
    with pytest.raises(ValueError, match="initial_state must have shape"):
        sa.lightning_attention(q, k, v, initial_state=torch.zeros(2, 4, 8, 5))
    with pytest.raises(ValueError, match="causal=True"):
        sa.lightning_attention(q, k, v, causal=False, return_state=True)
    with pytest.raises(ValueError, match="state must have shape"):
        sa.lightning_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], torch.zeros(1, 1, 1, 1))
