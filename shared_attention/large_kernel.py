"""Large kernel attention (VAN, Guo et al., 2022).

A ``K × K`` convolution is decomposed into a ``(2d-1) × (2d-1)`` depthwise conv, a ``⌈K/d⌉ × ⌈K/d⌉``
depthwise conv with dilation ``d`` and a ``1 × 1`` conv; its output is the attention map that
multiplies the input element-wise (no softmax):

    Attention = Conv₁ₓ₁(DWDConv₇ₓ₇,d=3(DWConv₅ₓ₅(F)))        (K = 21, d = 3)
    Output    = Attention ⊙ F

Receptive field ``K + 2`` (23 for K = 21) at ``O(C·HW)`` cost: adaptive in space and in channels.

On CPU the dilated depthwise conv runs as a dense one (:func:`dilated_depthwise_conv2d`): oneDNN's dilated
depthwise path is 3-6× slower than its dense one at VAN's sizes, and the dilated conv was VAN's costliest
layer.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_tensor


def lka_kernel_sizes(kernel_size: int, dilation: int) -> tuple[int, int]:
    """``(local kernel, dilated kernel)`` of the decomposition: ``(2d-1, ⌈K/d⌉)`` (made odd)."""
    if kernel_size < 3 or dilation < 1:
        raise ValueError(f"kernel_size must be >= 3 and dilation >= 1, got {kernel_size}, {dilation}")
    local = 2 * dilation - 1
    dilated = math.ceil(kernel_size / dilation)
    return local, dilated + (1 - dilated % 2)


def dilated_depthwise_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, dilation: int) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=d·(k//2), dilation=d, groups=C)`` for odd ``k × k`` depthwise
    ``weight [C, 1, k, k]``, computed on CPU without a dilated kernel (the same sums, in another order):

    * taps that can only meet zero padding are dropped: on an ``H``-row map a tap ``j`` rows from the
      centre reaches an input row only if ``d·j ≤ H - 1``, so the kernel keeps ``r = min(k//2, ⌊(H-1)/d⌋)``
      rows either side (and likewise for columns); ``r = 0`` leaves a per-channel scale;
    * when the whole kernel stays, output row ``d·p + i`` only reads input rows ``d·(p + j) + i``: the map
      splits into ``d × d`` phase grids ``x[..., i::d, j::d]``, each convolved with the dense kernel
      (padding ``k//2``), and interleaves back;
    * a cropped kernel (a map smaller than the kernel's span) keeps the dilated conv, which is fast there.
    """
    if dilation == 1 or x.device.type != "cpu":
        return F.conv2d(x, weight, bias, padding=dilation * (weight.shape[-1] // 2), dilation=dilation,
                        groups=x.shape[1])  # fmt: skip
    b, c, h, w = x.shape
    centre = weight.shape[-1] // 2
    rh, rw = min(centre, (h - 1) // dilation), min(centre, (w - 1) // dilation)
    weight = weight[:, :, centre - rh : centre + rh + 1, centre - rw : centre + rw + 1]
    if rh == rw == 0:
        out = x * weight.reshape(1, c, 1, 1)
        return out if bias is None else out + bias.reshape(1, c, 1, 1)
    if rh < centre or rw < centre:
        return F.conv2d(x, weight, bias, padding=(dilation * rh, dilation * rw), dilation=dilation, groups=c)
    d, gh, gw = dilation, -(-h // dilation), -(-w // dilation)  # phase grids of gh × gw
    phases = F.pad(x, (0, gw * d - w, 0, gh * d - h)).reshape(b, c, gh, d, gw, d)
    phases = phases.permute(0, 3, 5, 1, 2, 4).reshape(b * d * d, c, gh, gw)
    out = F.conv2d(phases, weight, bias, padding=centre, groups=c)
    out = out.reshape(b, d, d, c, gh, gw).permute(0, 3, 4, 1, 5, 2).reshape(b, c, gh * d, gw * d)
    return out[:, :, :h, :w]


def large_kernel_attention(
    x: Tensor,
    local_weight: Tensor,
    local_bias: Tensor | None,
    dilated_weight: Tensor,
    dilated_bias: Tensor | None,
    dilation: int,
    pointwise_weight: Tensor,
    pointwise_bias: Tensor | None,
) -> Tensor:
    """``x ⊙ Conv₁ₓ₁(DWDConv(DWConv(x)))`` for ``x [b, C, H, W]``; depthwise weights are ``[C, 1, k, k]``."""
    check_tensor("x", x, 4)
    channels = x.shape[1]
    if local_weight.shape[0] != channels or dilated_weight.shape[0] != channels:
        raise ValueError(f"depthwise weights must have {channels} output channels like x")
    attn = F.conv2d(x, local_weight, local_bias, padding=local_weight.shape[-1] // 2, groups=channels)
    attn = dilated_depthwise_conv2d(attn, dilated_weight, dilated_bias, dilation)
    attn = F.conv2d(attn, pointwise_weight, pointwise_bias)
    return x * attn


class LargeKernelAttention(nn.Module):
    """LKA on ``[b, C, H, W]`` maps (VAN's ``AttentionModule``); defaults give VAN's 5×5 → 7×7 d3 → 1×1."""

    def __init__(self, dim: int, kernel_size: int = 21, dilation: int = 3):
        super().__init__()
        local, dilated = lka_kernel_sizes(kernel_size, dilation)
        self.dilation = dilation
        self.local = nn.Conv2d(dim, dim, local, padding=local // 2, groups=dim)
        self.dilated = nn.Conv2d(dim, dim, dilated, padding=dilation * (dilated // 2), dilation=dilation, groups=dim)
        self.pointwise = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        check_tensor("x", x, 4)
        if x.shape[1] != self.local.in_channels:
            raise ValueError(f"x must have {self.local.in_channels} channels, got {x.shape[1]}")
        return large_kernel_attention(
            x,
            self.local.weight,
            self.local.bias,
            self.dilated.weight,
            self.dilated.bias,
            self.dilation,
            self.pointwise.weight,
            self.pointwise.bias,
        )
