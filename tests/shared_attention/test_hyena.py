"""The Hyena operator: FFT convolution equals a direct convolution, the operator equals a float64
re-computation from its parameters, causality, padding, implicit filter properties, errors."""

from __future__ import annotations

import pytest
import torch

import shared_attention as sa
from shared_attention.hyena import HyenaPositionalFeatures

from .reference import direct_causal_conv, max_rel_err

FP32_REL = 1e-5


@pytest.mark.parametrize("length", [1, 2, 7, 64, 101])
def test_fft_conv_equals_direct_convolution(length):
    u = torch.randn(2, 3, length)
    h = torch.randn(3, length) * torch.exp(-0.1 * torch.arange(length))
    skip = torch.randn(3)
    out = sa.fft_long_conv(u, h, skip)
    expected = direct_causal_conv(u, h) + u.double() * skip.double().view(1, 3, 1)
    # fp32 FFT of length 2L: error ~ eps·log2(2L)·max|y|; 1e-5 holds to L ~ 10^4
    assert max_rel_err(out, expected) < FP32_REL


def test_fft_conv_runs_in_fp32_for_half_inputs():
    u = torch.randn(1, 2, 50).half()
    h = torch.randn(2, 50)
    out = sa.fft_long_conv(u, h)
    assert out.dtype == torch.float16
    assert max_rel_err(out.float(), direct_causal_conv(u.float(), h)) < 2e-3  # one fp16 rounding


def _operator_ref(op: sa.HyenaOperator, u: torch.Tensor) -> torch.Tensor:
    """Order-2 Hyena recomputed in float64 with loops for both convolutions."""
    op = op.double()
    u = u.double()
    _, length, d = u.shape
    z = op.in_proj(u).transpose(1, 2)  # [b, 3d, L]
    w = op.short_filter.weight[:, 0]  # [3d, 3]
    short = torch.zeros_like(z)
    for t in range(length):
        for s in range(w.shape[1]):  # causal: output t uses inputs t-2, t-1, t
            src = t - (w.shape[1] - 1) + s
            if src >= 0:
                short[:, :, t] += w[:, s] * z[:, :, src]
    short = short + op.short_filter.bias.view(1, -1, 1)
    x0, x1, v = short.split(d, dim=1)
    taps = op.filter(length)  # [d, L], float64 now
    gated = v * x1
    v = direct_causal_conv(gated, taps) + gated * op.filter.skip.view(1, -1, 1)
    return op.out_proj((v * x0).transpose(1, 2))


def test_operator_matches_float64_reference():
    op = sa.HyenaOperator(d_model=8, l_max=64, filter_order=16)
    u = torch.randn(2, 37, 8)
    out = op(u)
    assert out.shape == u.shape
    assert max_rel_err(out, _operator_ref(op, u)) < 1e-4  # 3 chained fp32 stages


def test_operator_is_causal_and_ignores_left_padding():
    op = sa.HyenaOperator(d_model=8, l_max=64, filter_order=16)
    u = torch.randn(1, 30, 8)
    out = op(u)
    u2 = u.clone()
    u2[:, 20:] += 5
    assert torch.allclose(op(u2)[:, :20], out[:, :20], atol=1e-6)
    # left padding with a mask leaves the real positions' outputs unchanged (filters see lags only)
    padded = torch.cat([torch.randn(1, 6, 8) * 100, u], dim=1)
    mask = torch.tensor([[False] * 6 + [True] * 30])
    assert max_rel_err(op(padded, mask)[:, 6:], out) < 1e-5


def test_implicit_filter_decays_and_generalises_to_shorter_lengths():
    filt = sa.HyenaFilter(channels=4, l_max=128, filter_order=16)
    taps = filt(128).detach()
    assert taps.shape == (4, 128)
    # the exponential window: late taps are much smaller than early ones
    assert float(taps[:, -16:].abs().mean()) < 0.1 * float(taps[:, :16].abs().mean())
    # a shorter length takes the first positions of the same grid
    assert torch.allclose(filt(40).detach(), taps[:, :40])


def test_period_features_are_exact_and_reach_a_codon_rhythm_the_bands_cannot():
    feats = HyenaPositionalFeatures(emb_dim=33, l_max=300, periods=(3,))
    z, _ = feats(300)
    assert feats.dim == 35 and z.shape == (1, 300, 35)
    k = torch.arange(300, dtype=torch.float64)
    angle = 2 * torch.pi * k / 3
    assert torch.allclose(z[0, :, 33:].double(), torch.stack([angle.cos(), angle.sin()], -1), atol=1e-6)
    # a filter that weighs every third tap (one reading frame): fitted linearly from each feature set
    frame = (k % 3 == 0).double() - 1 / 3

    def residual(features: torch.Tensor) -> float:
        x = features[0].double()
        fit = x @ torch.linalg.lstsq(x, frame.unsqueeze(1)).solution
        return float((fit[:, 0] - frame).norm() / frame.norm())

    assert residual(z) < 1e-6 and residual(z[..., :33]) > 0.9  # the 16 bands stop at 15 cycles per l_max
    op = sa.HyenaOperator(d_model=8, l_max=64, filter_order=16, filter_periods=(3,))
    u = torch.randn(2, 37, 8)
    assert max_rel_err(op(u), _operator_ref(op, u)) < 1e-4
    with pytest.raises(ValueError, match="periods"):
        HyenaPositionalFeatures(5, 16, periods=(1,))


def test_order_three_and_gradients():
    op = sa.HyenaOperator(d_model=6, l_max=32, order=3, filter_order=8)
    u = torch.randn(2, 20, 6, requires_grad=True)
    op(u).square().sum().backward()
    assert torch.isfinite(u.grad).all()
    assert op.filter.mlp[0].weight.grad is not None


def test_bad_arguments():
    op = sa.HyenaOperator(d_model=4, l_max=16)
    with pytest.raises(ValueError, match="sequence length must be in"):
        op(torch.randn(1, 17, 4))
    with pytest.raises(ValueError, match="last dim 4"):
        op(torch.randn(1, 8, 5))
    with pytest.raises(ValueError, match="mask must be bool"):
        op(torch.randn(1, 8, 4), torch.ones(1, 8))
    with pytest.raises(ValueError, match="filt must be"):
        sa.fft_long_conv(torch.randn(1, 2, 8), torch.randn(2, 7))
    with pytest.raises(ValueError, match="order"):
        sa.HyenaOperator(d_model=4, l_max=16, order=1)


def test_inference_reuses_the_filter_spectrum_until_a_weight_changes():
    op = sa.HyenaOperator(16, 64).eval()
    u = torch.randn(2, 40, 16)
    with torch.no_grad():
        first = op(u)
        cached = op.filter_spectra(40, u.dtype)
        assert op.filter_spectra(40, u.dtype) is cached  # computed once per length
        assert torch.equal(op(u), first)
        op.filter.mlp[0].weight.add_(0.1)  # an in-place update (an optimizer step, load_state_dict)
        assert op.filter_spectra(40, u.dtype) is not cached
        changed = op(u)
    assert not torch.allclose(changed, first)
    with torch.enable_grad():  # training recomputes (and differentiates) the filters every call
        assert torch.allclose(op(u), changed, atol=1e-6)
        assert op(u).sum().requires_grad
