"""Heterogeneous and Hiformer attention (low rank, pruning), L-query attention, pointer attention."""

from __future__ import annotations

import pytest
import torch

import shared_attention as sa

from .reference import max_rel_err, pointer_ref, softmax_ref, window_mean_ref

FP32_REL = 1e-5
GRAD_REL = 1e-4


# ---------------------------------------------------------------- heterogeneous / Hiformer
def test_heterogeneous_attention_uses_per_token_projections():
    b, length, d, h, dk = 2, 5, 6, 2, 3
    x = torch.randn(b, length, d)
    wq, wk, wv = (torch.randn(length, d, h * dk) for _ in range(3))
    out = sa.heterogeneous_attention(x, wq, wk, wv, num_heads=h)

    def project(w):  # token by token
        return torch.stack([x[:, i].double() @ w[i].double() for i in range(length)], 1)

    def heads(t):
        return t.view(b, length, h, dk).transpose(1, 2)

    expected = softmax_ref(heads(project(wq)), heads(project(wk)), heads(project(wv)))
    assert max_rel_err(out, expected) < FP32_REL
    # the shared-projection transformer is the special case with identical per-token weights
    shared = sa.heterogeneous_attention(
        x, wq[:1].expand_as(wq), wk[:1].expand_as(wk), wv[:1].expand_as(wv), num_heads=h
    )
    assert max_rel_err(shared, softmax_ref(heads(x @ wq[0]), heads(x @ wk[0]), heads(x @ wv[0]))) < FP32_REL


def test_hiformer_composite_projection_and_block_diagonal_special_case():
    b, length, d, h, dk = 3, 4, 5, 2, 3
    x = torch.randn(b, length, d)
    wq, wk, wv = (torch.randn(length * d, length * h * dk) for _ in range(3))
    out = sa.hiformer_attention(x, wq, wk, wv, num_heads=h)

    def heads(flat):
        return flat.view(b, length, h, dk).transpose(1, 2)

    flat_x = x.reshape(b, -1).double()
    expected = softmax_ref(heads(flat_x @ wq.double()), heads(flat_x @ wk.double()), heads(flat_x @ wv.double()))
    assert max_rel_err(out, expected) < FP32_REL
    # heterogeneous attention = composite projections restricted to a block diagonal
    per_token = [torch.randn(length, d, h * dk) for _ in range(3)]
    block = [torch.block_diag(*w) for w in per_token]
    assert (
        max_rel_err(
            sa.hiformer_attention(x, *block, num_heads=h),
            sa.heterogeneous_attention(x, *per_token, num_heads=h),
        )
        < FP32_REL
    )


def test_hiformer_pruning_and_low_rank():
    layer = sa.HiformerAttention(num_tokens=6, dim=8, num_heads=2, head_dim=4)
    x = torch.randn(5, 6, 8)
    full = layer(x)
    task = [4, 5]
    assert max_rel_err(layer(x, query_tokens=task), full[:, task]) < FP32_REL
    # full-rank factorisation reproduces the layer; a low rank approximates it and has fewer parameters
    exact = layer.factorize(rank=48)
    assert max_rel_err(exact(x), full) < 1e-4
    low = layer.factorize(rank=8)
    n_full = sum(p.numel() for p in layer.parameters())
    n_low = sum(p.numel() for p in low.parameters())
    assert n_low < n_full / 2
    assert low(x, query_tokens=task).shape == (5, 2, 8)
    # truncated SVD: the weight error shrinks as the rank grows and is the tail of the singular values
    singular = torch.linalg.svdvals(layer.wq.detach().double())
    errors = []
    for r in (2, 8, 24):
        w = layer.factorize(rank=r).weight("wq")
        err = torch.linalg.matrix_norm((w.left @ w.right).detach().double() - layer.wq.detach().double())
        assert float(err) == pytest.approx(float(singular[r:].square().sum().sqrt()), rel=1e-4)
        errors.append(float(err))
    assert errors == sorted(errors, reverse=True)
    full.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


def test_heterogeneous_layer_and_errors():
    layer = sa.HeterogeneousAttention(num_tokens=4, dim=6, num_heads=2)
    x = torch.randn(3, 4, 6)
    out = layer(x)
    assert out.shape == x.shape
    assert max_rel_err(layer(x, query_tokens=[3]), out[:, [3]]) < FP32_REL
    with pytest.raises(ValueError, match="wq must have shape"):
        sa.heterogeneous_attention(x[:, :3], layer.wq, layer.wk, layer.wv, num_heads=2)
    with pytest.raises(ValueError, match="query_tokens must lie"):
        layer(x, query_tokens=[4])
    with pytest.raises(ValueError, match="wq must map"):
        sa.hiformer_attention(x, torch.randn(10, 8), torch.randn(24, 8), torch.randn(24, 8), num_heads=2)


# ---------------------------------------------------------------- L-query attention
def test_window_mean_is_mask_aware():
    x = torch.randn(2, 9, 4)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, :3] = False  # left padding
    mask[1, 4] = False
    for window in (1, 2, 3, 5):
        assert max_rel_err(sa.window_mean(x, window, mask), window_mean_ref(x, window, mask)) < FP32_REL
    assert torch.equal(sa.window_mean(x, 1), x)
    with pytest.raises(ValueError, match="window"):
        sa.window_mean(x, 0)


def test_lquery_attention_matches_reference_and_is_causal():
    q, k, v = (torch.randn(2, 2, 11, 4) for _ in range(3))
    key_mask = torch.ones(2, 11, dtype=torch.bool)
    key_mask[1, :2] = False
    out = sa.lquery_attention(q, k, v, window=3, key_mask=key_mask)
    q_bar = torch.stack([window_mean_ref(q[:, h], 3, key_mask) for h in range(2)], 1)
    expected = softmax_ref(q_bar, k, v, causal=True, key_mask=key_mask)
    assert max_rel_err(out, expected) < FP32_REL
    q2, k2 = q.clone(), k.clone()
    q2[:, :, 6:] += 1
    k2[:, :, 6:] -= 1
    assert torch.equal(sa.lquery_attention(q2, k2, v, window=3, key_mask=key_mask)[:, :, :6], out[:, :, :6])
    # window 1 is ordinary causal attention
    assert max_rel_err(sa.lquery_attention(q, k, v, window=1), softmax_ref(q, k, v, causal=True)) < FP32_REL


def test_lquery_layer():
    layer = sa.LQuerySelfAttention(8, num_heads=2, window=3)
    x = torch.randn(2, 7, 8)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[0, :2] = False
    out = layer(x, mask)
    assert out.shape == x.shape
    x2 = x.clone()
    x2[:, 5:] += 3
    assert torch.allclose(layer(x2, mask)[:, :5], out[:, :5])


# ---------------------------------------------------------------- pointer attention
def test_pointer_log_probs_match_reference():
    keys, query, v = torch.randn(3, 7, 5), torch.randn(3, 5), torch.randn(5)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, 2] = False
    mask[2, :6] = False
    for clip in (None, 10.0):
        out = sa.pointer_log_probs(keys, query, v, mask=mask, clip=clip)
        assert max_rel_err(out, pointer_ref(keys, query, v, mask=mask, clip=clip)) < FP32_REL
        assert torch.allclose(out.exp().sum(-1), torch.ones(3))
    assert out[2, 6] == 0.0  # the only allowed position has probability 1


def test_compatibility_pointer_matches_its_float64_equation():
    """Kool et al.: ``log_softmax(C · tanh(qᵀk / √d))`` over the allowed positions."""
    keys, query = torch.randn(3, 7, 8, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, :3] = False
    scores = 10.0 * torch.tanh(torch.einsum("bd,bnd->bn", query, keys) / 8**0.5)
    expected = torch.log_softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    out = sa.compatibility_log_probs(keys, query, mask=mask)
    assert torch.allclose(out, expected, atol=1e-12)
    layer = sa.build("compatibility_pointer", dim=8).double()
    steps = layer(layer.project_keys(keys), query.unsqueeze(1).expand(3, 2, 8), mask=mask.unsqueeze(1).expand(3, 2, 7))
    assert steps.shape == (3, 2, 7) and torch.isinf(steps[1, :, :3]).all()


def test_pointer_module_multi_step_and_gradients():
    layer = sa.PointerAttention(encoder_dim=6, decoder_dim=4, hidden=5)
    enc = torch.randn(2, 8, 6)
    dec = torch.randn(2, 3, 4)
    keys = layer.project_keys(enc)
    steps = layer(keys, dec)
    assert steps.shape == (2, 3, 8)
    for t in range(3):
        assert max_rel_err(layer(keys, dec[:, t]), steps[:, t]) < FP32_REL
    steps[:, :, 0].sum().backward()
    assert layer.v.grad is not None and layer.w1.weight.grad is not None


def test_pointer_rejects_empty_choice_and_bad_shapes():
    keys, query, v = torch.randn(2, 4, 3), torch.randn(2, 3), torch.randn(3)
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(ValueError, match="no position"):
        sa.pointer_log_probs(keys, query, v, mask=mask)
    with pytest.raises(ValueError, match="mask must be a bool tensor of shape"):
        sa.pointer_log_probs(keys, query, v, mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="query must be"):
        sa.pointer_log_probs(keys, torch.randn(2, 4), v)
