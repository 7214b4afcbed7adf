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
that one chunk's gather stays under a fixed budget whatever the image size.
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


def region_layout(size: int, regions: int) -> tuple[int, int]:
    """``(tokens per region, number of regions)`` for ``size`` tokens split about ``regions`` ways."""
    if regions < 1:
        raise ValueError(f"regions must be >= 1, got {regions}")
    per_region = math.ceil(size / min(regions, size))
    return per_region, math.ceil(size / per_region)


def _to_regions(x: Tensor, grid: tuple[int, int], rh: int, rw: int, nh: int, nw: int) -> Tensor:
    """``[b, h, H·W, d]`` → ``[b, h, regions, tokens, d]`` with zero padding."""
    b, heads, _, d = x.shape
    height, width = grid
    x = x.view(b, heads, height, width, d)
    x = F.pad(x, (0, 0, 0, nw * rw - width, 0, nh * rh - height))
    x = x.view(b, heads, nh, rh, nw, rw, d).permute(0, 1, 2, 4, 3, 5, 6)
    return x.reshape(b, heads, nh * nw, rh * rw, d)


def _from_regions(x: Tensor, grid: tuple[int, int], rh: int, rw: int, nh: int, nw: int) -> Tensor:
    b, heads, _, _, d = x.shape
    height, width = grid
    x = x.view(b, heads, nh, nw, rh, rw, d).permute(0, 1, 2, 4, 3, 5, 6)
    x = x.reshape(b, heads, nh * rh, nw * rw, d)[:, :, :height, :width]
    return x.reshape(b, heads, height * width, d)


def _by_region(x: Tensor) -> Tensor:
    """``[b, h, c, tokens, d]`` → ``[b·c, h, tokens, d]``: one attention batch entry per region."""
    b, heads, c = x.shape[:3]
    return x.transpose(1, 2).reshape(b * c, heads, -1, x.shape[-1])


def route_regions(q_regions: Tensor, k_regions: Tensor, valid: Tensor, topk: int) -> Tensor:
    """Top-``topk`` region indices ``[b, R, topk]`` from region means of ``[b, h, R, T, d]`` q and k."""
    count = valid.sum(-1).clamp_min(1).to(q_regions.dtype).view(1, 1, -1, 1)
    weight = valid.to(q_regions.dtype).view(1, 1, *valid.shape, 1)
    q_mean = ((q_regions * weight).sum(3) / count).detach()  # [b, h, R, d]
    k_mean = ((k_regions * weight).sum(3) / count).detach()
    b, h, r, d = q_mean.shape
    q_flat = q_mean.transpose(1, 2).reshape(b, r, h * d)
    k_flat = k_mean.transpose(1, 2).reshape(b, r, h * d)
    affinity = torch.matmul(q_flat, k_flat.transpose(1, 2))  # [b, R, R]
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

    qr = _to_regions(q, grid, rh, rw, nh, nw)
    kr = _to_regions(k, grid, rh, rw, nh, nw)
    vr = _to_regions(v, grid, rh, rw, nh, nw)
    routes = route_regions(qr, kr, valid, topk)  # [b, R, topk]

    d, dv = q.shape[-1], v.shape[-1]
    chunk = max(1, _GATHER_ELEMENTS // max(1, b * heads * topk * tokens * max(d, dv)))
    padded = not bool(valid.all())
    outs = []
    for start in range(0, n_regions, chunk):
        sel = routes[:, start : start + chunk]  # [b, c, topk]
        c = sel.shape[1]
        index = sel.view(b, 1, c, topk, 1, 1)
        k_g = kr.unsqueeze(2).expand(b, heads, c, n_regions, tokens, d)
        k_g = k_g.gather(3, index.expand(b, heads, c, topk, tokens, d))
        v_g = vr.unsqueeze(2).expand(b, heads, c, n_regions, tokens, dv)
        v_g = v_g.gather(3, index.expand(b, heads, c, topk, tokens, dv))
        out = softmax_attention(
            _by_region(qr[:, :, start : start + c]),
            _by_region(k_g),
            _by_region(v_g),
            key_mask=valid[sel].view(b * c, topk * tokens) if padded else None,  # no mask: SDPA's fast path
            scale=scale,
        )
        outs.append(out.view(b, c, heads, tokens, dv).transpose(1, 2))
    return _from_regions(torch.cat(outs, dim=2), grid, rh, rw, nh, nw)


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
