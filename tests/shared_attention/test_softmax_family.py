"""Softmax, sigmoid and softplus attention against float64 loop references: outputs, gradients,
causality, masks, biases, cross attention, odd lengths and bad arguments."""

from __future__ import annotations

import math

import pytest
import torch

import shared_attention as sa
from shared_attention import _rows

from .reference import max_rel_err, sigmoid_ref, softmax_ref, softplus_ref

# fp32 against fp64 on rows of <= 17 keys: products and sums carry ~1e-7 relative error each, so
# 1e-5 of the largest output leaves a wide margin while catching any real formula error (>= 1e-2).
FP32_REL = 1e-5
# Gradients go through one more matmul and the normalisation's quotient rule: 1e-4.
GRAD_REL = 1e-4

MECHANISMS = {
    "softmax": (sa.softmax_attention, softmax_ref, {}),
    "sigmoid": (sa.sigmoid_attention, sigmoid_ref, {}),
    "softplus": (sa.softplus_attention, softplus_ref, {"train_length": 8}),
    "softplus_reweighted": (
        lambda *a, **kw: sa.softplus_attention(*a, reweight_power=3.0, **kw),
        lambda *a, **kw: softplus_ref(*a, power=3.0, **kw),
        {"train_length": 8},
    ),
}
# (batch, heads, n_q, n_k, head_dim): odd lengths, a single token, cross attention with n_q != n_k
SHAPES = [(2, 3, 7, 7, 8), (1, 2, 13, 13, 16), (2, 1, 5, 9, 4), (1, 1, 1, 1, 8), (1, 2, 17, 17, 6)]


def _inputs(b, h, n_q, n_k, d, dtype=torch.float32):
    q = torch.randn(b, h, n_q, d, dtype=dtype)
    k = torch.randn(b, h, n_k, d, dtype=dtype)
    v = torch.randn(b, h, n_k, d + 1, dtype=dtype)  # d_v != d on purpose
    return q, k, v


def _call(name, fn, q, k, v, extra, **kw):
    if name.startswith("softplus"):
        kw = {**kw, "train_length": extra["train_length"]}
    return fn(q, k, v, **kw)


@pytest.mark.parametrize("name", list(MECHANISMS))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("causal", [False, True])
def test_matches_float64_reference(name, shape, causal):
    fn, ref, extra = MECHANISMS[name]
    q, k, v = _inputs(*shape)
    out = _call(name, fn, q, k, v, extra, causal=causal)
    expected = _call(name, ref, q, k, v, extra, causal=causal)
    assert out.shape == expected.shape
    assert out.dtype == torch.float32
    assert max_rel_err(out, expected) < FP32_REL


@pytest.mark.parametrize("name", list(MECHANISMS))
@pytest.mark.parametrize("causal", [False, True])
def test_gradients_match_reference(name, causal):
    fn, ref, extra = MECHANISMS[name]
    q, k, v = _inputs(2, 2, 9, 9, 8)
    weight = torch.randn(2, 2, 9, 9)
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    (_call(name, fn, *leaves, extra, causal=causal) * weight).sum().backward()
    ref_leaves = [t.double().requires_grad_(True) for t in (q, k, v)]
    (_call(name, ref, *ref_leaves, extra, causal=causal) * weight.double()).sum().backward()
    for got, want, label in zip(leaves, ref_leaves, "qkv"):
        assert max_rel_err(got.grad, want.grad) < GRAD_REL, f"d{label}"


@pytest.mark.parametrize("name", list(MECHANISMS))
def test_key_mask_and_bias(name):
    fn, ref, extra = MECHANISMS[name]
    q, k, v = _inputs(2, 2, 6, 10, 8)
    key_mask = torch.ones(2, 10, dtype=torch.bool)
    key_mask[0, 7:] = False
    key_mask[1, :3] = False
    bias = torch.randn(1, 2, 6, 10)
    out = _call(name, fn, q, k, v, extra, key_mask=key_mask, bias=bias)
    expected = _call(name, ref, q, k, v, extra, key_mask=key_mask, bias=bias)
    assert max_rel_err(out, expected) < FP32_REL


@pytest.mark.parametrize("name", list(MECHANISMS))
def test_padding_equals_truncation(name):
    """Padded keys, whatever their values, act as if the sequence were shorter."""
    fn, _, extra = MECHANISMS[name]
    q, k, v = _inputs(1, 2, 5, 8, 8)
    key_mask = torch.tensor([[True] * 6 + [False] * 2])
    k_garbage, v_garbage = k.clone(), v.clone()
    k_garbage[:, :, 6:] = 1e3
    v_garbage[:, :, 6:] = -1e3
    padded = _call(name, fn, q, k_garbage, v_garbage, extra, key_mask=key_mask)
    short = _call(name, fn, q, k[:, :, :6], v[:, :, :6], extra)
    assert max_rel_err(padded, short) < FP32_REL


@pytest.mark.parametrize("name", list(MECHANISMS))
def test_causal_future_does_not_change_past(name):
    fn, _, extra = MECHANISMS[name]
    q, k, v = _inputs(2, 2, 12, 12, 8)
    out = _call(name, fn, q, k, v, extra, causal=True)
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    q2[:, :, 7:] += 5.0
    k2[:, :, 7:] -= 3.0
    v2[:, :, 7:] *= 10.0
    out2 = _call(name, fn, q2, k2, v2, extra, causal=True)
    assert torch.equal(out[:, :, :7], out2[:, :, :7])
    assert not torch.allclose(out[:, :, 7:], out2[:, :, 7:])


def test_query_without_visible_keys_outputs_zero():
    """Left padding under a causal mask: the first query sees only padding."""
    q, k, v = _inputs(1, 1, 4, 4, 8)
    key_mask = torch.tensor([[False, True, True, True]])
    for fn in (sa.softmax_attention, sa.sigmoid_attention, sa.softplus_attention):
        out = fn(q, k, v, causal=True, key_mask=key_mask)
        assert torch.isfinite(out).all()
        assert torch.equal(out[0, 0, 0], torch.zeros(9))
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    sa.softmax_attention(*leaves, causal=True, key_mask=key_mask).sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in leaves)


def test_row_blocking_is_exact(monkeypatch):
    """Sigmoid/softplus walk over blocks of query rows; tiny blocks give the same result."""
    q, k, v = _inputs(1, 2, 40, 40, 8)
    whole = [sa.sigmoid_attention(q, k, v, causal=True), sa.softplus_attention(q, k, v, causal=True)]
    monkeypatch.setattr(_rows, "_BLOCK_ELEMENTS", 2 * 40 * 16)  # 16 rows per block
    assert _rows.row_block_size(1, 2, 40, 40) == 16
    blocked = [sa.sigmoid_attention(q, k, v, causal=True), sa.softplus_attention(q, k, v, causal=True)]
    for a, b in zip(whole, blocked):
        assert max_rel_err(b, a) < 1e-6


def test_sigmoid_default_bias_is_minus_log_n():
    q, k, v = _inputs(2, 1, 3, 6, 4)
    key_mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    default = sa.sigmoid_attention(q, k, v, key_mask=key_mask)
    explicit0 = sa.sigmoid_attention(q[:1], k[:1], v[:1], sigmoid_bias_value=-math.log(6))
    explicit1 = sa.sigmoid_attention(q[1:], k[1:, :, :4], v[1:, :, :4], sigmoid_bias_value=-math.log(4))
    assert max_rel_err(default[:1], explicit0) < 1e-6
    assert max_rel_err(default[1:], explicit1) < 1e-6


def test_softplus_rows_are_normalised_and_reweighting_sharpens():
    """Outputs of V = identity are the weight rows: they sum to one, and re-weighting lowers entropy."""
    n = 16
    q = torch.randn(1, 1, n, 8) * 2
    k = torch.randn(1, 1, n, 8) * 2
    eye = torch.eye(n).view(1, 1, n, n)
    plain = sa.softplus_attention(q, k, eye, train_length=n)
    sharp = sa.softplus_attention(q, k, eye, train_length=n, reweight_power=2.0)
    assert torch.allclose(plain.sum(-1), torch.ones(1, 1, n), atol=1e-6)
    assert torch.allclose(sharp.sum(-1), torch.ones(1, 1, n), atol=1e-6)

    def entropy(p):
        return -(p * p.clamp_min(1e-12).log()).sum(-1)

    assert bool((entropy(sharp) <= entropy(plain) + 1e-6).all())
    assert float(entropy(sharp).mean()) < float(entropy(plain).mean()) - 0.1
    assert bool((sharp.argmax(-1) == plain.argmax(-1)).all())


def test_softplus_length_scale_grows_with_length():
    """At n = n_train the scale is 1; at 4·n_train it is larger, so the same scores get sharper."""
    n_train = 8
    q = torch.randn(1, 1, 1, 4)
    k = torch.randn(1, 1, n_train, 4)
    eye = torch.eye(n_train).view(1, 1, n_train, n_train)
    w_train = sa.softplus_attention(q, k, eye, train_length=n_train)
    reps = 4
    k_long = k.repeat(1, 1, reps, 1)
    eye_long = torch.eye(n_train).repeat(reps, 1).view(1, 1, n_train * reps, n_train)
    w_long = sa.softplus_attention(q, k_long, eye_long, train_length=n_train)  # weights summed per key
    assert float(w_long.max()) > float(w_train.max())


def test_gradcheck_float64_functions():
    """The float64 paths of the row-normalised mechanisms pass torch's numerical gradient check."""
    q, k, v = (t.requires_grad_(True) for t in _inputs(1, 1, 4, 5, 3, dtype=torch.float64))
    key_mask = torch.tensor([[True, True, True, True, False]])
    for fn in (
        lambda q, k, v: sa.softmax_attention(q, k, v, key_mask=key_mask),
        lambda q, k, v: sa.sigmoid_attention(q, k, v, causal=True),
        lambda q, k, v: sa.softplus_attention(q, k, v, train_length=4),
        lambda q, k, v: sa.softplus_attention(q, k, v, train_length=4, reweight_power=2.0),
    ):
        assert torch.autograd.gradcheck(fn, (q, k, v))


@pytest.mark.parametrize("fn", [sa.softmax_attention, sa.sigmoid_attention, sa.softplus_attention])
def test_bad_arguments_name_the_argument(fn):
    q, k, v = _inputs(2, 2, 5, 5, 8)
    with pytest.raises(ValueError, match="q must have rank 4"):
        fn(q[0], k, v)
    with pytest.raises(ValueError, match="k must have head_dim 8"):
        fn(q, k[..., :4], v)
    with pytest.raises(ValueError, match="v must have seq 5"):
        fn(q, k, v[:, :, :3])
    with pytest.raises(ValueError, match="heads"):
        fn(q, k[:, :1], v[:, :1])
    with pytest.raises(ValueError, match="key_mask must have shape"):
        fn(q, k, v, key_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="key_mask must be a bool"):
        fn(q, k, v, key_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="seq must be at least 1"):
        fn(q[:, :, :0], k, v)
    with pytest.raises(ValueError, match="bias of shape"):
        fn(q, k, v, bias=torch.zeros(2, 3, 5, 5))
    with pytest.raises(TypeError, match=r"q must be a torch\.Tensor"):
        fn([1.0], k, v)


def test_softplus_rejects_bad_settings():
    q, k, v = _inputs(1, 1, 3, 3, 4)
    with pytest.raises(ValueError, match="train_length"):
        sa.softplus_attention(q, k, v, train_length=1)
    with pytest.raises(ValueError, match="reweight_power"):
        sa.softplus_attention(q, k, v, reweight_power=0.5)
