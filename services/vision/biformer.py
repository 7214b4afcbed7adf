"""BiFormer (Zhu et al., CVPR 2023), on the core's bi-level routing attention.

A convolutional stem (two 3×3 stride-2 convs), then four stages of blocks

    x = x + DWConv₃ₓ₃(x)                                  (convolutional position encoding)
    x = x + DropPath(BRA(LN(x)))                          (regions per side S, top-k regions: 1, 4, 16)
    x = x + DropPath(MLP(LN(x)))                          (MLP ratio 3)

and in the last stage (the official config's ``topk = -2``) plain multi-head attention with LePE in
place of BRA: 8 heads, no qkv bias, ``softmax(QKᵀ/√(dim/8)) V + DWConv₅ₓ₅(x)`` with the depthwise term
on the block's (normalised) input rather than on V.

with 3×3 stride-2 downsampling between stages, a final batch norm and average pooling. BRA comes from
``shared_attention.BiLevelRoutingAttention`` (routing by region-mean affinity, top-k, gather, token
attention scaled by ``dim ** -0.5`` as the official code does, depthwise-conv local context enhancement
on V). The core's BRA walks query regions in chunks, so memory stays bounded
at large inputs instead of holding all top-k copies of keys and values (the published code's problem).

Registered in timm: ``biformer_tiny`` (13,142,760 parameters as the official model, 2.2 GMACs at 224²),
``biformer_small`` (25.5 M / 4.5 G),
``biformer_base`` and ``biformer_small_input`` (28–64 px: regions chosen to divide the maps).
"""

from __future__ import annotations

import torch
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import Tensor, nn

import shared_attention as sa

__all__ = ["BiFormer"]


class AttentionLePE(nn.Module):
    """The last stage's attention: multi-head softmax attention over all tokens plus a 5×5 depthwise
    convolution of the input (locally-enhanced positional encoding), on ``[b, H, W, C]``."""

    def __init__(self, dim: int, num_heads: int = 8, lepe_kernel: int = 5):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.lepe = nn.Conv2d(dim, dim, lepe_kernel, padding=lepe_kernel // 2, groups=dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, height, width, c = x.shape
        n = height * width
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = sa.softmax_attention(q, k, v).transpose(1, 2).reshape(b, height, width, c)
        return self.proj(out + self.lepe(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class Block(nn.Module):
    """Channels-last block on ``[b, H, W, C]``; ``topk=None`` makes it a last-stage block (AttentionLePE)."""

    def __init__(self, dim: int, heads: int, regions: int, topk: int | None, mlp_ratio: float, drop: float,
                 drop_path: float):  # fmt: skip
        super().__init__()
        self.pos = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = (
            AttentionLePE(dim) if topk is None else sa.BiLevelRoutingAttention(dim, heads, regions=regions, topk=topk)
        )
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.pos(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class BiFormer(nn.Module):
    """BiFormer with timm's model surface (``forward_features`` returns ``[b, C, H, W]``)."""

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        depths: tuple[int, ...] = (2, 2, 8, 2),
        embed_dims: tuple[int, ...] = (64, 128, 256, 512),
        head_dim: int = 32,
        regions: tuple[int, ...] = (7, 7, 7, 7),
        topks: tuple[int | None, ...] = (1, 4, 16, None),
        mlp_ratio: float = 3.0,
        stem_stride: int = 4,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "avg",
        **kwargs,  # img_size and the like: a convolutional stem takes any input size
    ):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.global_pool = global_pool
        half = embed_dims[0] // 2
        first_stride = 2 if stem_stride >= 4 else 1
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, half, 3, stride=first_stride, padding=1), nn.BatchNorm2d(half), nn.GELU(),
            nn.Conv2d(half, embed_dims[0], 3, stride=2, padding=1), nn.BatchNorm2d(embed_dims[0]),
        )  # fmt: skip
        self.downsamples = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b))
            for a, b in zip(embed_dims[:-1], embed_dims[1:])
        )
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        cursor = 0
        for i, depth in enumerate(depths):
            heads = max(1, embed_dims[i] // head_dim)
            self.stages.append(nn.Sequential(*(
                Block(embed_dims[i], heads, regions[i], topks[i], mlp_ratio, drop_rate, rates[cursor + j])
                for j in range(depth)
            )))  # fmt: skip
            cursor += depth
        self.norm = nn.BatchNorm2d(embed_dims[-1])
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.downsamples[i - 1](x)
            x = stage(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.norm(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        if self.global_pool == "avg":
            x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _create_biformer(variant: str, pretrained: bool = False, **kwargs) -> BiFormer:
    if pretrained:
        raise ValueError("no pretrained BiFormer weights exist here: models are trained by pipelines.vision")
    return build_model_with_cfg(BiFormer, variant, pretrained, **kwargs)


def _cfg(**kwargs) -> dict:
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7), "crop_pct": 0.9,
        "interpolation": "bicubic", "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
        "first_conv": "stem.0", "classifier": "head", **kwargs,
    }  # fmt: skip


default_cfgs = generate_default_cfgs({
    "biformer_tiny": _cfg(), "biformer_small": _cfg(), "biformer_base": _cfg(),
    "biformer_small_input": _cfg(input_size=(1, 28, 28), pool_size=(4, 4), mean=(0.1307,), std=(0.3081,),
                                 num_classes=10),
})  # fmt: skip


@register_model
def biformer_tiny(pretrained: bool = False, **kwargs) -> BiFormer:
    model_args = dict(depths=(2, 2, 8, 2), embed_dims=(64, 128, 256, 512))
    return _create_biformer("biformer_tiny", pretrained, **dict(model_args, **kwargs))


@register_model
def biformer_small(pretrained: bool = False, **kwargs) -> BiFormer:
    model_args = dict(depths=(4, 4, 18, 4), embed_dims=(64, 128, 256, 512))
    return _create_biformer("biformer_small", pretrained, **dict(model_args, **kwargs))


@register_model
def biformer_base(pretrained: bool = False, **kwargs) -> BiFormer:
    model_args = dict(depths=(4, 4, 18, 4), embed_dims=(96, 192, 384, 768))
    return _create_biformer("biformer_base", pretrained, **dict(model_args, **kwargs))


@register_model
def biformer_small_input(pretrained: bool = False, **kwargs) -> BiFormer:
    """For 28–64 px images: stride-2 stem (28 px → 14, 7, 4, 2), regions 7/7/2/1 dividing the maps
    (padded where they do not), top-k 1/4/2/all."""
    model_args = dict(depths=(2, 2, 2, 2), embed_dims=(32, 64, 128, 160), stem_stride=2, regions=(7, 7, 2, 1),
                      topks=(2, 4, 2, None), mlp_ratio=3.0, in_chans=1, num_classes=10)  # fmt: skip
    return _create_biformer("biformer_small_input", pretrained, **dict(model_args, **kwargs))
