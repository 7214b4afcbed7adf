"""Heterogeneous feature attention and Hiformer's composite projections (Gui et al., 2023).

Feature tokens ``e_1..e_L ∈ R^d`` (one per feature field, plus task tokens) come from different
feature spaces, so one shared ``W_Q, W_K, W_V`` (as in AutoInt) is a poor fit.

Heterogeneous attention gives every token its own projections:

    q_i = e_i W_i^Q,  k_j = e_j W_j^K,  v_j = e_j W_j^V,   o_i = Σ_j softmax_j(q_i·k_j / √d_k) v_j

The Hiformer layer goes further with *composite* projections of the concatenated tokens
``ê = [e_1, …, e_L] ∈ R^{L·d}``:

    [Q_1, …, Q_L] = ê Ŵ^Q,   [K_1, …, K_L] = ê Ŵ^K,   [V_1, …, V_L] = ê Ŵ^V,   Ŵ ∈ R^{L·d × L·H·d_k}

so every token's query, key and value depend on all features (heterogeneous attention is the
block-diagonal special case). For serving, ``Ŵ ≈ U V`` with rank ``r ≪ L·H·d_k`` (truncated SVD), and the
last layer computes queries only for the task tokens whose outputs are used (pruning): the
attention of that layer costs ``O(t·L)`` instead of ``O(L²)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ._checks import check_key_mask, check_tensor
from .softmax import softmax_attention


class LowRank(NamedTuple):
    """A matrix stored as ``left @ right`` (``[m, r] @ [r, n]``)."""

    left: Tensor
    right: Tensor


Weight = Tensor | LowRank


def _token_index(query_tokens: Sequence[int] | Tensor | None, num_tokens: int, device) -> Tensor | None:
    if query_tokens is None:
        return None
    index = torch.as_tensor(query_tokens, dtype=torch.long, device=device).reshape(-1)
    if index.numel() == 0:
        raise ValueError("query_tokens must name at least one token")
    if bool((index < 0).any()) or bool((index >= num_tokens).any()):
        raise ValueError(f"query_tokens must lie in [0, {num_tokens}), got {index.tolist()}")
    return index


def _split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``[b, L, H·d]`` → ``[b, H, L, d]``."""
    b, length, width = x.shape
    if width % num_heads:
        raise ValueError(f"projection width {width} is not divisible by num_heads {num_heads}")
    return x.view(b, length, num_heads, width // num_heads).transpose(1, 2)


def heterogeneous_attention(
    x: Tensor,
    wq: Tensor,
    wk: Tensor,
    wv: Tensor,
    *,
    num_heads: int,
    key_mask: Tensor | None = None,
    query_tokens: Sequence[int] | Tensor | None = None,
) -> Tensor:
    """Per-token projections then softmax attention among the tokens.

    Args:
        x: tokens ``[b, L, d]``.
        wq, wk: ``[L, d, H·d_k]``; wv: ``[L, d, H·d_v]`` (one projection per token).
        num_heads: ``H``.
        key_mask: bool ``[b, L]``, True for present tokens.
        query_tokens: compute outputs only for these token indices (all when None).
    Returns:
        ``[b, H, L_q, d_v]``.
    """
    check_tensor("x", x, 3)
    b, length, dim = x.shape
    for name, w in (("wq", wq), ("wk", wk), ("wv", wv)):
        check_tensor(name, w, 3)
        if w.shape[0] != length or w.shape[1] != dim:
            raise ValueError(f"{name} must have shape [{length}, {dim}, *], got {tuple(w.shape)}")
    check_key_mask(key_mask, b, length)
    index = _token_index(query_tokens, length, x.device)
    x_q, wq_sel = (x, wq) if index is None else (x[:, index], wq[index])
    q = _split_heads(torch.einsum("bld,ldk->blk", x_q, wq_sel), num_heads)
    k = _split_heads(torch.einsum("bld,ldk->blk", x, wk), num_heads)
    v = _split_heads(torch.einsum("bld,ldk->blk", x, wv), num_heads)
    return softmax_attention(q, k, v, key_mask=key_mask)


def composite_projection(
    x: Tensor, weight: Weight, num_heads: int, tokens_out: int, index: Tensor | None = None
) -> Tensor:
    """``ê Ŵ`` reshaped to ``[b, H, tokens, d_head]``; ``index`` keeps only those output tokens."""
    b = x.shape[0]
    flat = x.reshape(b, -1)
    right = weight.right if isinstance(weight, LowRank) else weight
    width = right.shape[-1] // tokens_out  # H·d_head
    if index is not None:
        right = right.view(right.shape[0], tokens_out, width)[:, index].reshape(right.shape[0], -1)
    out = flat @ weight.left @ right if isinstance(weight, LowRank) else flat @ right
    return _split_heads(out.view(b, -1, width), num_heads)


def hiformer_attention(
    x: Tensor,
    wq: Weight,
    wk: Weight,
    wv: Weight,
    *,
    num_heads: int,
    key_mask: Tensor | None = None,
    query_tokens: Sequence[int] | Tensor | None = None,
) -> Tensor:
    """Composite projections of all tokens, then softmax attention.

    Args:
        x: tokens ``[b, L, d]``.
        wq, wk: ``[L·d, L·H·d_k]`` matrices or :class:`LowRank` factors; wv: ``[L·d, L·H·d_v]``.
        num_heads: ``H``.
        key_mask: bool ``[b, L]``.
        query_tokens: compute queries (and outputs) only for these tokens (last-layer pruning).
    Returns:
        ``[b, H, L_q, d_v]``.
    """
    check_tensor("x", x, 3)
    b, length, dim = x.shape
    for name, w in (("wq", wq), ("wk", wk), ("wv", wv)):
        rows = w.left.shape[0] if isinstance(w, LowRank) else check_tensor(name, w, 2).shape[0]
        cols = w.right.shape[-1] if isinstance(w, LowRank) else w.shape[1]
        if rows != length * dim or cols % length:
            raise ValueError(
                f"{name} must map L·d = {length * dim} inputs to a multiple of L = {length} outputs, "
                f"got {rows} → {cols}"
            )
    check_key_mask(key_mask, b, length)
    index = _token_index(query_tokens, length, x.device)
    q = composite_projection(x, wq, num_heads, length, index)
    k = composite_projection(x, wk, num_heads, length)
    v = composite_projection(x, wv, num_heads, length)
    return softmax_attention(q, k, v, key_mask=key_mask)


class HeterogeneousAttention(nn.Module):
    """Heterogeneous attention layer: per-token Q/K/V and output projections.

    Input ``x [b, num_tokens, dim]``; output ``[b, L_q, dim]`` (``L_q`` = ``len(query_tokens)`` or all).
    """

    def __init__(self, num_tokens: int, dim: int, num_heads: int, head_dim: int | None = None):
        super().__init__()
        head_dim = head_dim or dim // num_heads
        if head_dim < 1:
            raise ValueError(f"head_dim must be >= 1 (dim {dim}, num_heads {num_heads})")
        self.num_tokens, self.dim, self.num_heads, self.head_dim = num_tokens, dim, num_heads, head_dim
        inner = num_heads * head_dim
        self.wq = nn.Parameter(torch.randn(num_tokens, dim, inner) / math.sqrt(dim))
        self.wk = nn.Parameter(torch.randn(num_tokens, dim, inner) / math.sqrt(dim))
        self.wv = nn.Parameter(torch.randn(num_tokens, dim, inner) / math.sqrt(dim))
        self.wo = nn.Parameter(torch.randn(num_tokens, inner, dim) / math.sqrt(inner))

    def forward(
        self,
        x: Tensor,
        key_mask: Tensor | None = None,
        query_tokens: Sequence[int] | Tensor | None = None,
    ) -> Tensor:
        out = heterogeneous_attention(
            x,
            self.wq,
            self.wk,
            self.wv,
            num_heads=self.num_heads,
            key_mask=key_mask,
            query_tokens=query_tokens,
        )
        index = _token_index(query_tokens, self.num_tokens, x.device)
        wo = self.wo if index is None else self.wo[index]
        b, _, lq, _ = out.shape
        return torch.einsum("blk,lkd->bld", out.transpose(1, 2).reshape(b, lq, -1), wo)


class HiformerAttention(nn.Module):
    """Hiformer layer attention: composite Q/K/V projections, per-token output projections.

    Args:
        num_tokens: ``L`` (feature tokens plus task tokens).
        dim: token width ``d``.
        num_heads, head_dim: attention heads.
        rank: store each composite projection as a rank-``rank`` factorisation (None = full).
    Use :meth:`factorize` to turn a trained full layer into a low-rank one, and ``query_tokens`` in
    :meth:`forward` to prune the last layer to the task tokens.
    """

    def __init__(
        self,
        num_tokens: int,
        dim: int,
        num_heads: int,
        head_dim: int | None = None,
        rank: int | None = None,
    ):
        super().__init__()
        head_dim = head_dim or dim // num_heads
        if head_dim < 1:
            raise ValueError(f"head_dim must be >= 1 (dim {dim}, num_heads {num_heads})")
        self.num_tokens, self.dim, self.num_heads, self.head_dim = num_tokens, dim, num_heads, head_dim
        self.rank = rank
        fan_in, fan_out = num_tokens * dim, num_tokens * num_heads * head_dim
        if rank is not None and not 1 <= rank <= min(fan_in, fan_out):
            raise ValueError(f"rank must be in [1, {min(fan_in, fan_out)}], got {rank}")
        for name in ("wq", "wk", "wv"):
            if rank is None:
                self.register_parameter(name, nn.Parameter(torch.randn(fan_in, fan_out) / math.sqrt(fan_in)))
            else:
                left = nn.Parameter(torch.randn(fan_in, rank) / math.sqrt(fan_in))
                right = nn.Parameter(torch.randn(rank, fan_out) / math.sqrt(rank))
                self.register_parameter(f"{name}_left", left)
                self.register_parameter(f"{name}_right", right)
        inner = num_heads * head_dim
        self.wo = nn.Parameter(torch.randn(num_tokens, inner, dim) / math.sqrt(inner))

    def weight(self, name: str) -> Weight:
        if self.rank is None:
            return getattr(self, name)
        return LowRank(getattr(self, f"{name}_left"), getattr(self, f"{name}_right"))

    def forward(
        self,
        x: Tensor,
        key_mask: Tensor | None = None,
        query_tokens: Sequence[int] | Tensor | None = None,
    ) -> Tensor:
        out = hiformer_attention(
            x,
            self.weight("wq"),
            self.weight("wk"),
            self.weight("wv"),
            num_heads=self.num_heads,
            key_mask=key_mask,
            query_tokens=query_tokens,
        )
        index = _token_index(query_tokens, self.num_tokens, x.device)
        wo = self.wo if index is None else self.wo[index]
        b, _, lq, _ = out.shape
        return torch.einsum("blk,lkd->bld", out.transpose(1, 2).reshape(b, lq, -1), wo)

    @torch.no_grad()
    def factorize(self, rank: int) -> HiformerAttention:
        """A copy whose composite projections are their best rank-``rank`` approximations (SVD)."""
        low = HiformerAttention(self.num_tokens, self.dim, self.num_heads, self.head_dim, rank=rank)
        low.to(device=self.wo.device, dtype=self.wo.dtype)
        for name in ("wq", "wk", "wv"):
            w = self.weight(name)
            full = w.left @ w.right if isinstance(w, LowRank) else w
            u, s, vh = torch.linalg.svd(full.double(), full_matrices=False)
            root = s[:rank].sqrt()
            getattr(low, f"{name}_left").copy_(u[:, :rank] * root)
            getattr(low, f"{name}_right").copy_(root.unsqueeze(1) * vh[:rank])
        low.wo.copy_(self.wo)
        return low
