"""Multi-query (L-query) self-attention for sequential recommendation (MQSA, Zhu et al., WSDM 2024).

A query at step ``t`` built from the last item alone (SASRec) has low bias but high variance; the
L-query instead averages the representations of the last ``L`` items, ignoring padding:

    q̄_t = Σ_{j=t-L+1..t} m_j x_j / Σ_{j=t-L+1..t} m_j        (m_j = 1 for real items, 0 for padding)
    o_t = Σ_{j≤t} softmax_j(q̄_t·k_j / √d) v_j                  (causal, padded keys excluded)

``L = 1`` is ordinary causal self-attention. MQSA mixes the logits of an ``L = 1`` and an ``L > 1``
tower; the layer below applies MQSA's LayerNorm to the averaged query before projecting it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_key_mask, check_qkv, check_tensor
from .softmax import softmax_attention


def window_mean(x: Tensor, window: int, mask: Tensor | None = None) -> Tensor:
    """Mask-aware mean of the last ``window`` positions (positions whose window holds no real item → 0).

    Args:
        x: ``[b, n, c]`` or ``[b, h, n, d]``, the sequence on the second-to-last axis.
        window: ``L >= 1``.
        mask: bool ``[b, n]``, True for real items.
    """
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    check_tensor("x", x, (3, 4))
    n = x.shape[-2]
    if mask is None:
        weight = torch.ones(n, 1, device=x.device, dtype=x.dtype)
    else:
        check_key_mask(mask, x.shape[0], n, name="mask")
        weight = mask.to(x.dtype).unsqueeze(-1)
        if x.ndim == 4:
            weight = weight.unsqueeze(1)
    weighted = x * weight
    weight = weight.expand(*x.shape[:-1], 1)
    total, count = weighted, weight
    for shift in range(1, min(window, n)):
        # position t also takes position t - shift; the first `shift` positions have nothing there
        total = total + F.pad(weighted[..., : n - shift, :], (0, 0, shift, 0))
        count = count + F.pad(weight[..., : n - shift, :], (0, 0, shift, 0))
    return total / count.clamp_min(1.0)


def lquery_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    window: int,
    key_mask: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """Causal self-attention whose query at ``t`` is the mask-aware mean of the last ``window`` queries.

    Args:
        q, k, v: ``[b, h, n, d]`` (self attention: same length).
        window: ``L``.
        key_mask: bool ``[b, n]``, True for real items (also used for the query average).
    Returns:
        ``[b, h, n, d_v]``.
    """
    b, _, n, _, _ = check_qkv(q, k, v, same_length=True)
    check_key_mask(key_mask, b, n)
    q_bar = window_mean(q, window, key_mask)
    return softmax_attention(q_bar, k, v, causal=True, key_mask=key_mask, scale=scale)


class LQuerySelfAttention(nn.Module):
    """MQSA's long-query attention: ``Q = W_q LN(q̄)``, ``K = W_k x``, ``V = W_v x``, causal softmax.

    Args:
        dim: item representation width.
        num_heads: heads.
        window: ``L`` (1 gives SASRec's query).
        dropout: attention dropout.
    Input ``x [b, n, dim]`` and ``key_mask [b, n]``; output ``[b, n, dim]`` (before the residual).
    """

    def __init__(self, dim: int, num_heads: int = 1, window: int = 3, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.dim, self.num_heads, self.window = dim, num_heads, window
        self.query_norm = nn.LayerNorm(dim)
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def query_source(self, x: Tensor, key_mask: Tensor | None) -> Tensor:
        """``LN(q̄)``: the normalised averaged representations (also MQSA's residual branch)."""
        return self.query_norm(window_mean(x, self.window, key_mask))

    def forward(self, x: Tensor, key_mask: Tensor | None = None, query_source: Tensor | None = None) -> Tensor:
        """``query_source``: :meth:`query_source` when the caller already computed it (for its residual)."""
        check_tensor("x", x, 3)
        b, n, _ = x.shape
        check_key_mask(key_mask, b, n)

        def heads(t: Tensor) -> Tensor:
            return t.view(b, n, self.num_heads, -1).transpose(1, 2)

        source = self.query_source(x, key_mask) if query_source is None else query_source
        q = heads(self.q_proj(source))
        out = softmax_attention(
            q,
            heads(self.k_proj(x)),
            heads(self.v_proj(x)),
            causal=True,
            key_mask=key_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return out.transpose(1, 2).reshape(b, n, self.dim)
