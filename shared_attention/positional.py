"""Positional terms: ALiBi biases (causal and symmetric), rotary embeddings (RoPE), sinusoidal tables.

ALiBi (Press et al., 2022) adds ``-m_h * distance(i, j)`` to the attention score of head ``h``, where the
slopes ``m_h`` form a geometric sequence. The same slopes give lightning attention its per-head decay
``λ_h = exp(-m_h)``.

RoPE (Su et al., 2021) rotates each pair of channels ``(x_c, x_{c + d/2})`` of a query or key at position
``p`` by the angle ``p * θ_c`` with ``θ_c = base^{-2c/d}``; then ``<R_m q, R_n k>`` depends on the positions
only through ``m - n``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._checks import check_positive, check_tensor


def alibi_slopes(num_heads: int) -> Tensor:
    """ALiBi slopes ``m_h`` for ``num_heads`` heads (float32, shape ``[num_heads]``).

    For a power of two ``H``: ``m_h = 2^{-8h/H}`` for ``h = 1..H``. Otherwise the slopes of the nearest
    lower power of two ``P`` followed by every other slope of ``2P`` (the published recipe), so the set
    is still geometric-like and all slopes lie in ``(0, 1)``.
    """
    if not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if num_heads & (num_heads - 1) == 0:
        slopes = power_of_two(num_heads)
    else:
        lower = 2 ** math.floor(math.log2(num_heads))
        slopes = power_of_two(lower) + power_of_two(2 * lower)[0::2][: num_heads - lower]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(
    slopes: Tensor,
    n_q: int,
    n_k: int,
    *,
    symmetric: bool = False,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Additive ALiBi bias ``[heads, n_q, n_k]``: ``-m_h * (i' - j)`` (causal) or ``-m_h * |i' - j|``.

    ``i' = i + (n_k - n_q)`` aligns queries with the end of the keys (as ``causal_mask`` does). The causal
    form is meant to be used together with a causal mask: entries for ``j > i'`` are positive and must be
    masked out by the caller. The symmetric form is for bidirectional encoders (BEACON-B).
    """
    check_tensor("slopes", slopes, 1)
    i = torch.arange(n_q, device=device, dtype=dtype).unsqueeze(1) + (n_k - n_q)
    j = torch.arange(n_k, device=device, dtype=dtype).unsqueeze(0)
    dist = (i - j).abs() if symmetric else (i - j)
    return -slopes.to(device=device, dtype=dtype).view(-1, 1, 1) * dist


def rope_angles(positions: Tensor, head_dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """``cos``/``sin`` tables ``[len(positions), head_dim]`` for :func:`apply_rope` (half-split layout)."""
    if head_dim % 2:
        raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
    check_positive("base", base)
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim)
    angles = positions.to(torch.float64).unsqueeze(-1) * inv_freq  # [n, d/2]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x [..., seq, head_dim]`` by the tables from :func:`rope_angles`.

    ``(x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)`` on the two halves of the last dimension.
    """
    check_tensor("x", x)
    if x.shape[-1] != cos.shape[-1] or x.shape[-2] != cos.shape[-2]:
        raise ValueError(f"x of shape {tuple(x.shape)} does not match RoPE tables of shape {tuple(cos.shape)}")
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """RoPE for ``[batch, heads, seq, head_dim]`` queries and keys; tables are cached per length."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {head_dim}")
        self.head_dim = head_dim
        self.base = base
        self._cache: dict[tuple[int, int, str], tuple[Tensor, Tensor]] = {}

    def tables(self, start: int, length: int, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (start, length, str(device))
        if key not in self._cache:
            if len(self._cache) > 16:
                self._cache.clear()
            positions = torch.arange(start, start + length, device=device)
            self._cache[key] = rope_angles(positions, self.head_dim, self.base)
        return self._cache[key]

    def forward(self, q: Tensor, k: Tensor, q_start: int | None = None) -> tuple[Tensor, Tensor]:
        """Rotate ``q`` and ``k``. Keys take positions ``0..n_k-1``; queries end where the keys end
        (``q_start = n_k - n_q`` unless given), matching the causal alignment of the core."""
        n_q, n_k = q.shape[-2], k.shape[-2]
        start = n_k - n_q if q_start is None else q_start
        cos_k, sin_k = self.tables(0, n_k, k.device)
        cos_q, sin_q = self.tables(start, n_q, q.device)
        return apply_rope(q, cos_q, sin_q), apply_rope(k, cos_k, sin_k)


def sinusoidal_embedding(positions: Tensor, dim: int, base: float = 10000.0) -> Tensor:
    """Transformer sinusoidal table ``[len(positions), dim]``: ``sin(p ω_c)`` then ``cos(p ω_c)``,
    ``ω_c = base^{-2c/dim}`` (Vaswani et al., 2017; concatenated rather than interleaved)."""
    if dim < 2 or dim % 2:
        raise ValueError(f"dim must be an even number >= 2, got {dim}")
    check_tensor("positions", positions, 1)
    omega = base ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim)
    angles = positions.to(torch.float64).unsqueeze(-1) * omega
    return torch.cat([angles.sin(), angles.cos()], dim=-1).float()


def with_alibi(bias: Tensor | None, alibi: Tensor | None, n_q: int, n_k: int, causal: bool) -> Tensor | None:
    """``bias`` plus the ALiBi term of ``alibi`` slopes (causal or symmetric, following ``causal``)."""
    if alibi is None:
        return bias
    term = alibi_bias(alibi, n_q, n_k, symmetric=not causal, device=alibi.device).unsqueeze(0)
    return term if bias is None else bias + term
