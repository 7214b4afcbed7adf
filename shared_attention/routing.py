"""Bi-level routing attention (BiFormer, Zhu et al., CVPR 2023).

On an ``H × W`` token grid split into ``S_h × S_w`` regions:

1. region-level queries and keys are the means over each region: ``Q^r, K^r ∈ R^{S²×C}``;
2. region affinity ``A^r = Q^r (K^r)ᵀ``; each region keeps its ``k`` most related regions,
   ``I^r = topk(A^r, k)`` (routing takes no gradient, as published);
3. keys and values of the routed regions are gathered and every query attends to the
   ``k · HW/S²`` tokens of its region's routes: ``O = softmax(Q K_gᵀ s) V_g``;
4. local context enhancement (in the layer): ``O + DWConv₅ₓ₅(V)``.

When the grid does not divide into regions, regions take ``ceil(H / S_h)`` rows (and columns) and the
grid is padded with tokens that are never attended to and never counted in the region means; the
region count shrinks if needed so that no region is all padding. With ``topk`` covering all regions
the result equals full softmax attention.

Memory: the gathered keys/values are ``k`` times the input; query regions are processed in chunks so
that one chunk's gather stays under a fixed budget whatever the image size. Where routing keeps a large
share of the keys, or the map is small, the same attention runs as one dense pass with the routes as a
mask (:func:`_routed_dense`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_qkv, check_tensor
from .softmax import softmax_attention

# Elements of one chunk's gathered keys (b·h·regions·k·tokens·d); 2^24 fp32 values = 64 MiB.
_GATHER_ELEMENTS = 1 << 24
# One dense pass over all H·W keys (routing as a mask) replaces the gathered per-region batches when it
# scores at most _DENSE_RATIO times the routed keys, or the map is small (there the many tiny batches
# and copies cost more than the extra scores), while its [b, HW, HW] mask stays within _DENSE_ELEMENTS
# (64 MiB in fp32). On CPU, one thread: 3-4x faster at BiFormer-T's stage 3 (14 x 14, 16 of 49 regions)
# and 5x slower at its stage 2 (28 x 28, 4 of 49 regions), which keeps the gathered path.
_DENSE_RATIO, _SMALL_MAP, _DENSE_ELEMENTS = 4, 256, 1 << 24


def region_layout(size: int, regions: int) -> tuple[int, int]:
    """``(tokens per region, number of regions)`` for ``size`` tokens split about ``regions`` ways."""
    if regions < 1:
        raise ValueError(f"regions must be >= 1, got {regions}")
    per_region = math.ceil(size / min(regions, size))
    return per_region, math.ceil(size / per_region)


def _to_regions(x: Tensor, grid: tuple[int, int], rh: int, rw: int, nh: int, nw: int) -> Tensor:
    """``[b, H·W, h, d]`` → ``[b, regions, tokens, h, d]`` with zero padding (region-major, so that a
    region's keys are one contiguous row to gather)."""
    b, _, heads, d = x.shape
    height, width = grid
    x = x.reshape(b, height, width, heads * d)
    x = F.pad(x, (0, 0, 0, nw * rw - width, 0, nh * rh - height))
    x = x.view(b, nh, rh, nw, rw, heads, d).permute(0, 1, 3, 2, 4, 5, 6)
    return x.reshape(b, nh * nw, rh * rw, heads, d)


def _from_regions(x: Tensor, grid: tuple[int, int], rh: int, rw: int, nh: int, nw: int) -> Tensor:
    """The inverse of :func:`_to_regions`: ``[b, regions, tokens, h, d]`` → ``[b, H·W, h, d]``."""
    b, _, _, heads, d = x.shape
    height, width = grid
    x = x.view(b, nh, nw, rh, rw, heads, d).permute(0, 1, 3, 2, 4, 5, 6)
    x = x.reshape(b, nh * rh, nw * rw, heads, d)[:, :height, :width]
    return x.reshape(b, height * width, heads, d)


def route_regions(q_regions: Tensor, k_regions: Tensor, valid: Tensor, topk: int) -> Tensor:
    """Top-``topk`` region indices ``[b, R, topk]`` from region means of ``[b, R, T, h, d]`` q and k."""
    count = valid.sum(-1).clamp_min(1).to(q_regions.dtype).view(1, -1, 1)
    weight = valid.to(q_regions.dtype).view(1, *valid.shape, 1)
    b, r = q_regions.shape[:2]
    q_mean = ((q_regions.reshape(b, r, valid.shape[1], -1) * weight).sum(2) / count).detach()  # [b, R, h·d]
    k_mean = ((k_regions.reshape(b, r, valid.shape[1], -1) * weight).sum(2) / count).detach()
    affinity = torch.matmul(q_mean, k_mean.transpose(1, 2))  # [b, R, R]
    return affinity.topk(topk, dim=-1).indices


def bilevel_routing_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    grid: tuple[int, int],
    regions: int | tuple[int, int],
    topk: int | None,
    scale: float | None = None,
) -> Tensor:
    """Bi-level routing attention over ``[batch, heads, H·W, head_dim]`` tensors on a ``grid``.

    Args:
        q, k, v: token tensors in row-major grid order.
        grid: ``(H, W)`` of the token grid.
        regions: regions per side ``S`` (or ``(S_h, S_w)``).
        topk: routed regions per region; None (or more than there are regions) routes to all.
        scale: ``1/sqrt(head_dim)`` when None.
    Returns:
        ``[b, h, H·W, d_v]``.
    """
    b, heads, n_q, _, _ = check_qkv(q, k, v, same_length=True)
    height, width = grid
    if height * width != n_q:
        raise ValueError(f"grid {grid} has {height * width} tokens but q has seq {n_q}")
    s_h, s_w = (regions, regions) if isinstance(regions, int) else regions
    rh, nh = region_layout(height, s_h)
    rw, nw = region_layout(width, s_w)
    n_regions, tokens = nh * nw, rh * rw
    if topk is not None and topk < 1:
        raise ValueError(f"topk must be >= 1 or None, got {topk}")
    topk = n_regions if topk is None else min(topk, n_regions)

    valid = torch.zeros(nh * rh, nw * rw, dtype=torch.bool, device=q.device)
    valid[:height, :width] = True
    valid = valid.view(nh, rh, nw, rw).permute(0, 2, 1, 3).reshape(n_regions, tokens)

    # [b, R, T, h, d]: the attention batches below are views of these, with heads as a stride
    qr, kr = (_to_regions(t.transpose(1, 2), grid, rh, rw, nh, nw) for t in (q, k))
    routes = route_regions(qr, kr, valid, topk)  # [b, R, topk]
    if b * n_q * n_q <= _DENSE_ELEMENTS and (n_q <= _SMALL_MAP or n_q <= _DENSE_RATIO * topk * tokens):
        return _routed_dense(q, k, v, routes, grid, rh, rw, nw, scale)
    vr = _to_regions(v.transpose(1, 2), grid, rh, rw, nh, nw)
    rows = (routes + n_regions * torch.arange(b, device=q.device).view(b, 1, 1)).view(b, -1)  # rows of b·R

    d, dv = q.shape[-1], v.shape[-1]
    chunk = max(1, _GATHER_ELEMENTS // max(1, b * heads * topk * tokens * max(d, dv)))
    padded = not bool(valid.all())
    k_rows, v_rows = kr.reshape(b * n_regions, -1), vr.reshape(b * n_regions, -1)
    outs = []
    for start in range(0, n_regions, chunk):
        c = min(chunk, n_regions - start)
        sel = rows[:, start * topk : (start + c) * topk].reshape(-1)  # [b·c·topk]: whole regions, copied once
        k_g = k_rows.index_select(0, sel).view(b * c, topk * tokens, heads, d).transpose(1, 2)
        v_g = v_rows.index_select(0, sel).view(b * c, topk * tokens, heads, dv).transpose(1, 2)
        q_c = qr[:, start : start + c].reshape(b * c, tokens, heads, d).transpose(1, 2)
        out = softmax_attention(
            q_c,
            k_g,
            v_g,
            key_mask=valid[routes[:, start : start + c]].view(b * c, topk * tokens) if padded else None,
            scale=scale,
        )  # no mask: SDPA's fast path
        outs.append(out.transpose(1, 2).reshape(b, c, tokens, heads, dv))
    return _from_regions(torch.cat(outs, dim=1), grid, rh, rw, nh, nw).transpose(1, 2)


def _routed_dense(q: Tensor, k: Tensor, v: Tensor, routes: Tensor, grid: tuple[int, int], rh: int, rw: int,
                  nw: int, scale: float | None) -> Tensor:  # fmt: skip
    """The same attention as one pass over all tokens, each query seeing the keys of its region's routes
    (a ``[b, 1, HW, HW]`` bias); no region layout, no gathered copies."""
    b, n_regions = routes.shape[:2]
    height, width = grid
    if routes.shape[-1] == n_regions:  # routed to every region: full attention
        return softmax_attention(q, k, v, scale=scale)
    allowed = torch.zeros(b, n_regions, n_regions, dtype=torch.bool, device=q.device)
    allowed.scatter_(2, routes, True)
    rows = torch.arange(height, device=q.device) // rh
    cols = torch.arange(width, device=q.device) // rw
    region = (rows.view(-1, 1) * nw + cols.view(1, -1)).reshape(-1)  # each token's region
    seen = allowed[:, region][:, :, region]  # [b, HW, HW]
    bias = torch.zeros(seen.shape, dtype=q.dtype, device=q.device).masked_fill_(~seen, float("-inf"))
    return softmax_attention(q, k, v, bias=bias.unsqueeze(1), scale=scale)


class BiLevelRoutingAttention(nn.Module):
    """Bi-level routing attention layer on ``[b, H, W, dim]`` feature maps (channels last).

    Args:
        dim: channels.
        num_heads: heads (``dim`` must divide).
        regions: regions per side ``S`` (BiFormer uses 7 at 224²).
        topk: routed regions per region (BiFormer: 1, 4, 16 in stages 1–3); None routes to all.
        lepe_kernel: kernel of the depthwise conv on the values (local context enhancement).
        scale: the logits' scale; BiFormer's ``qk_dim ** -0.5`` with ``qk_dim`` the full channel width
            (not the head dim) when None, as the official implementation computes it.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        regions: int = 7,
        topk: int | None = 4,
        qkv_bias: bool = True,
        lepe_kernel: int = 5,
        scale: float | None = None,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.regions, self.topk = regions, topk
        self.scale = dim**-0.5 if scale is None else scale
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.lepe = nn.Conv2d(dim, dim, lepe_kernel, padding=lepe_kernel // 2, groups=dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        check_tensor("x", x, 4)
        b, height, width, c = x.shape
        if c != self.dim:
            raise ValueError(f"x must be [b, H, W, {self.dim}] (channels last), got {tuple(x.shape)}")
        n = height * width
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = bilevel_routing_attention(
            q, k, v, grid=(height, width), regions=self.regions, topk=self.topk, scale=self.scale
        )
        out = out.transpose(1, 2).reshape(b, height, width, c)
        v_image = v.transpose(1, 2).reshape(b, height, width, c).permute(0, 3, 1, 2)
        out = out + self.lepe(v_image).permute(0, 2, 3, 1)
        return self.proj(out)
