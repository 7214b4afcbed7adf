"""Softmax (scaled dot-product) attention.

    O = softmax(Q Kᵀ · s + B + M) V,    s = 1/√d by default,

where ``B`` is an optional additive bias (ALiBi, relative positions, agent biases) and ``M`` is 0 for
visible keys and -∞ for keys hidden by causality or padding. A query that sees no key at all (a
left-padded position under a causal mask) gets a zero output rather than NaN.

On CUDA the fused Triton kernel (``kernels/attention.py``) runs the call when it applies (padding as
``key_lengths``, ALiBi as ``alibi`` slopes, no arbitrary bias or dropout); otherwise, and on CPU, the
path is ``torch.nn.functional.scaled_dot_product_attention``. ``backend`` or ``ATTENTION_BACKEND``
forces either (see ``shared_attention._backend``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
    visibility,
)
from .multihead import MultiHeadAttention
from .positional import with_alibi


def softmax_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    key_mask: Tensor | None = None,
    key_lengths: Tensor | None = None,
    bias: Tensor | None = None,
    alibi: Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    backend: str | None = None,
) -> Tensor:
    """Softmax attention over ``[batch, heads, seq, head_dim]`` tensors.

    Args:
        q, k, v: queries ``[b, h, n_q, d]``, keys ``[b, h, n_k, d]``, values ``[b, h, n_k, d_v]``.
        causal: query ``i`` sees key ``j`` iff ``j <= i + n_k - n_q`` (queries aligned to the end).
        key_mask: bool ``[b, n_k]``, True for real keys, False for padding.
        key_lengths: int ``[b]``; keys at or beyond a sequence's length are padding.
        bias: additive score bias broadcastable to ``[b, h, n_q, n_k]``.
        alibi: ALiBi slopes ``[h]``: adds ``-m_h (i' - j)`` (causal) or ``-m_h |i' - j|``.
        scale: score scale, ``1/sqrt(d)`` when None.
        dropout_p: attention dropout probability (applied only when > 0).
        backend: ``"auto"``, ``"torch"`` or ``"triton"`` (default: ``ATTENTION_BACKEND`` or auto).
    Returns:
        ``[b, h, n_q, d_v]``.
    """
    b, h, n_q, n_k, _ = check_qkv(q, k, v)
    key_mask = check_key_mask(key_mask, b, n_k)
    key_lengths = check_key_lengths(key_lengths, b, n_k)
    key_mask, key_lengths = padding_as_lengths(key_mask, key_lengths)  # right padding reaches the kernels
    bias = check_bias(bias, b, h, n_q, n_k)
    alibi = check_alibi(alibi, h)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    kernel = use_triton(
        backend, "attention", q, k, v, kernel_blocker(bias=bias, key_mask=key_mask, dropout_p=dropout_p)
    )
    if kernel is not None:
        return kernel.fused_attention(
            q, k, v, score="softmax", causal=causal, key_lengths=key_lengths, alibi_slopes=alibi, scale=scale
        )
    key_mask = merge_padding(key_mask, key_lengths, n_k)
    bias = with_alibi(bias, alibi, n_q, n_k, causal)

    if causal and key_mask is None and bias is None and n_q == n_k:
        # SDPA's own causal mode (top-left aligned, which equals ours when n_q == n_k) lets the
        # kernels skip the masked blocks instead of reading a mask.
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p, scale=scale)
    mask = visibility(b, n_q, n_k, causal=causal, key_mask=key_mask, device=q.device)
    if mask is None:
        if bias is None:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=dropout_p, scale=scale)

    # Rows with no visible key would be all -inf (NaN after softmax, NaN gradients): open them for the
    # kernel and zero their output afterwards.
    has_key = mask.any(dim=-1, keepdim=True)  # [b or 1, 1, n_q, 1]
    mask = mask | ~has_key
    if bias is None:
        attn_mask: Tensor = mask
    else:
        attn_mask = bias.to(q.dtype).masked_fill(~mask, float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale)
    if bool(has_key.all()):
        return out
    return out.masked_fill(~has_key, 0.0)


def attention_weights(
    q: Tensor,
    k: Tensor,
    *,
    causal: bool = False,
    key_mask: Tensor | None = None,
    bias: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """The softmax weights ``[b, h, n_q, n_k]`` themselves, for attention maps and plots.

    Materialises the full matrix: use it for inspection, not in a model's hot path.
    """
    b, h, n_q, n_k, _ = check_qkv(q, k, k)
    key_mask = check_key_mask(key_mask, b, n_k)
    bias = check_bias(bias, b, h, n_q, n_k)
    s = q.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.matmul(q, k.transpose(-1, -2)) * s
    if bias is not None:
        scores = scores + bias
    mask = visibility(b, n_q, n_k, causal=causal, key_mask=key_mask, device=q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
        has_key = mask.any(dim=-1, keepdim=True)
        weights = torch.softmax(scores.masked_fill(~has_key, 0.0), dim=-1)
        return weights.masked_fill(~(mask & has_key), 0.0)
    return torch.softmax(scores, dim=-1)


class SoftmaxAttention(MultiHeadAttention):
    """Multi-head softmax attention layer (see :class:`MultiHeadAttention` for the arguments)."""

    mechanism = "softmax"

    def __init__(self, dim: int, num_heads: int, *, attn_dropout: float = 0.0, **kwargs):
        super().__init__(dim, num_heads, **kwargs)
        self.attn_dropout = attn_dropout

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        key_mask: Tensor | None,
        bias: Tensor | None,
        alibi: Tensor | None,
    ) -> Tensor:
        p = self.attn_dropout if self.training else 0.0
        return softmax_attention(q, k, v, causal=self.causal, key_mask=key_mask, bias=bias, alibi=alibi, dropout_p=p)
