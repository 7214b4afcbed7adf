"""Sigmoid attention (FlashSigmoid's form, Ramapuram et al., 2024).

    O = σ(Q Kᵀ · s + b + B) V,    s = 1/√d,   b = -log n by default,

with ``σ`` applied element-wise and **no** row normalisation. ``n`` is the number of real keys of the
sequence (its unpadded length), so that at initialisation ``Σ_j σ(x_j - log n) ≈ Σ_j e^{x_j} / n = O(1)``.
Hidden keys (causality, padding) contribute nothing. Because there are no row statistics, a fused kernel
needs no running max, no rescaling and no log-sum-exp in the backward pass.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._backend import use_triton
from ._checks import (
    check_alibi,
    check_bias,
    check_key_lengths,
    check_key_mask,
    check_qkv,
    kernel_blocker,
    merge_padding,
    padding_as_lengths,
)
from ._rows import rowwise_attention
from .multihead import MultiHeadAttention
from .positional import with_alibi


def sigmoid_bias(n_k: int, key_mask: Tensor | None, batch: int, device: torch.device) -> Tensor:
    """The default bias ``-log n`` as a ``[batch, 1, 1, 1]`` tensor (``n`` = real keys per sequence)."""
    if key_mask is None:
        return torch.full((batch, 1, 1, 1), -math.log(n_k), device=device)
    n = key_mask.sum(dim=-1).clamp_min(1).to(torch.float32)
    return (-torch.log(n)).view(batch, 1, 1, 1).to(device)


def sigmoid_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    key_mask: Tensor | None = None,
    key_lengths: Tensor | None = None,
    bias: Tensor | None = None,
    alibi: Tensor | None = None,
    sigmoid_bias_value: float | None = None,
    scale: float | None = None,
    backend: str | None = None,
) -> Tensor:
    """Sigmoid attention over ``[batch, heads, seq, head_dim]`` tensors.

    Args:
        q, k, v, causal, key_mask, key_lengths, bias, alibi, scale, backend: as in
            :func:`softmax_attention` (on CUDA the fused Triton kernel runs the call when it applies).
        sigmoid_bias_value: the scalar ``b``; ``-log n`` (per sequence, ``n`` = real keys) when None.
    Returns:
        ``[b, h, n_q, d_v]``.
    """
    b, h, n_q, n_k, _ = check_qkv(q, k, v)
    key_mask = check_key_mask(key_mask, b, n_k)
    key_lengths = check_key_lengths(key_lengths, b, n_k)
    key_mask, key_lengths = padding_as_lengths(key_mask, key_lengths)  # right padding reaches the kernels
    bias = check_bias(bias, b, h, n_q, n_k)
    alibi = check_alibi(alibi, h)
    kernel = use_triton(backend, "attention", q, k, v, kernel_blocker(bias=bias, key_mask=key_mask))
    if kernel is not None:
        return kernel.fused_attention(
            q,
            k,
            v,
            score="sigmoid",
            causal=causal,
            key_lengths=key_lengths,
            alibi_slopes=alibi,
            scale=scale,
            sigmoid_bias=sigmoid_bias_value,
        )
    key_mask = merge_padding(key_mask, key_lengths, n_k)
    bias = with_alibi(bias, alibi, n_q, n_k, causal)
    s = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if sigmoid_bias_value is None:
        offset = sigmoid_bias(n_k, key_mask, b, q.device)
    else:
        offset = torch.full((b, 1, 1, 1), float(sigmoid_bias_value), device=q.device)

    def weights(scores: Tensor, visible: Tensor, rows: slice) -> Tensor:
        w = torch.sigmoid(scores + offset.to(scores.dtype))
        return w.masked_fill(~visible, 0.0)

    return rowwise_attention(q, k, v, scale=s, causal=causal, key_mask=key_mask, bias=bias, weights_fn=weights)


class SigmoidAttention(MultiHeadAttention):
    """Multi-head sigmoid attention layer; ``sigmoid_bias_value`` fixes ``b`` (default ``-log n``)."""

    mechanism = "sigmoid"

    def __init__(self, dim: int, num_heads: int, *, sigmoid_bias_value: float | None = None, **kwargs):
        super().__init__(dim, num_heads, **kwargs)
        self.sigmoid_bias_value = sigmoid_bias_value

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        key_mask: Tensor | None,
        bias: Tensor | None,
        alibi: Tensor | None,
    ) -> Tensor:
        return sigmoid_attention(
            q,
            k,
            v,
            causal=self.causal,
            key_mask=key_mask,
            bias=bias,
            alibi=alibi,
            sigmoid_bias_value=self.sigmoid_bias_value,
        )
