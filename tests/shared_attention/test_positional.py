"""ALiBi slopes and biases, RoPE's relative-position property, sinusoidal tables."""

from __future__ import annotations

import math

import pytest
import torch

import shared_attention as sa


def test_alibi_slopes_published_values():
    assert torch.allclose(sa.alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    s12 = sa.alibi_slopes(12)  # 8 from the power of two, then every other of the 16-head set
    assert torch.allclose(s12[:8], sa.alibi_slopes(8))
    assert torch.allclose(s12[8:], sa.alibi_slopes(16)[0::2][:4])
    assert bool(((s12 > 0) & (s12 < 1)).all())
    with pytest.raises(ValueError, match="num_heads"):
        sa.alibi_slopes(0)


def test_alibi_bias_causal_and_symmetric():
    slopes = torch.tensor([0.5, 0.25])
    causal = sa.alibi_bias(slopes, 4, 4)
    symmetric = sa.alibi_bias(slopes, 4, 4, symmetric=True)
    for h, m in enumerate(slopes.tolist()):
        for i in range(4):
            for j in range(4):
                assert causal[h, i, j] == pytest.approx(-m * (i - j))
                assert symmetric[h, i, j] == pytest.approx(-m * abs(i - j))
    # queries aligned with the end of the keys
    tail = sa.alibi_bias(slopes, 2, 5)
    assert tail[0, 1, 4] == 0 and tail[0, 0, 3] == 0 and tail[0, 0, 0] == pytest.approx(-0.5 * 3)


def test_rope_depends_only_on_relative_position():
    d = 16
    q, k = torch.randn(d, dtype=torch.float64), torch.randn(d, dtype=torch.float64)

    def rotated(x, pos):
        cos, sin = sa.rope_angles(torch.tensor([pos]), d)
        return sa.apply_rope(x.float().view(1, d), cos, sin).double()[0]

    base = rotated(q, 3) @ rotated(k, 1)
    for shift in (1, 10, 250):
        assert float(rotated(q, 3 + shift) @ rotated(k, 1 + shift)) == pytest.approx(float(base), rel=1e-4)
    assert float(rotated(q, 5) @ rotated(k, 1)) != pytest.approx(float(base), rel=1e-3)
    # rotations preserve norms
    assert float(rotated(q, 7).norm()) == pytest.approx(float(q.norm()), rel=1e-5)


def test_rotary_module_aligns_queries_with_key_end():
    rope = sa.RotaryEmbedding(8)
    q, k = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 5, 8)
    q_rot, k_rot = rope(q, k)
    cos, sin = sa.rope_angles(torch.arange(2, 5), 8)
    assert torch.allclose(q_rot, sa.apply_rope(q, cos, sin))
    assert k_rot.shape == k.shape
    with pytest.raises(ValueError, match="even"):
        sa.RotaryEmbedding(7)


def test_sinusoidal_table():
    table = sa.sinusoidal_embedding(torch.arange(6), 8)
    assert table.shape == (6, 8)
    assert table[0, :4].abs().max() == 0 and torch.allclose(table[0, 4:], torch.ones(4))
    assert table[3, 0] == pytest.approx(math.sin(3.0))
    assert table[3, 4] == pytest.approx(math.cos(3.0))
    with pytest.raises(ValueError, match="even"):
        sa.sinusoidal_embedding(torch.arange(3), 5)
