"""VAN: Visual Attention Network (Guo et al., 2022), on the core's large kernel attention.

Four stages, each an overlapping patch embedding (conv + batch norm) and blocks of

    x = x + DropPath(γ₁ ⊙ SpatialAttention(BN(x)))       SpatialAttention = 1×1 → GELU → LKA → 1×1, + shortcut
    x = x + DropPath(γ₂ ⊙ Mlp(BN(x)))                    Mlp = 1×1 → DW 3×3 → GELU → 1×1

ending in a LayerNorm over the tokens; the head averages the last map. LKA is 5×5 depthwise → 7×7
depthwise dilation 3 → 1×1, multiplying the input (``shared_attention.LargeKernelAttention``).
Registered in timm as ``van_b0`` … ``van_b6`` (ImageNet sizes from the paper: B0 4.1 M / 0.9 G,
B1 13.9 M / 2.5 G) and ``van_small_input`` for 28–64 px images.
"""

from __future__ import annotations

import math

import torch
from timm.layers import DropPath, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import Tensor, nn

import shared_attention as sa

__all__ = ["VAN"]


class OverlapPatchEmbed(nn.Module):
    def __init__(self, in_chans: int, dim: int, patch_size: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=stride, padding=patch_size // 2)
        self.norm = nn.BatchNorm2d(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x))


class Mlp(nn.Module):
    """VAN's convolutional MLP: 1×1 → depthwise 3×3 → GELU → 1×1. Not timm's ``Mlp`` (no depthwise conv)
    nor its ``ConvMlp`` (no depthwise conv, a norm in the middle), so written here."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x))))
        return self.drop(self.fc2(x))


class SpatialAttention(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.act = nn.GELU()
        self.lka = sa.LargeKernelAttention(dim)
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj_2(self.lka(self.act(self.proj_1(x)))) + x


class Block(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float, drop: float, drop_path: float, layer_scale: float = 1e-2):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = SpatialAttention(dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.gamma_1 = nn.Parameter(layer_scale * torch.ones(dim, 1, 1))
        self.gamma_2 = nn.Parameter(layer_scale * torch.ones(dim, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.gamma_1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))


class Stage(nn.Module):
    def __init__(self, in_chans, dim, mlp_ratio, patch_size, stride, drop, drop_paths):
        super().__init__()
        self.patch_embed = OverlapPatchEmbed(in_chans, dim, patch_size, stride)
        self.blocks = nn.Sequential(*(Block(dim, mlp_ratio, drop, dp) for dp in drop_paths))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.patch_embed(x))
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class VAN(nn.Module):
    """Visual Attention Network with timm's model surface."""

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: tuple[int, ...] = (64, 128, 256, 512),
        depths: tuple[int, ...] = (3, 4, 6, 3),
        mlp_ratios: tuple[float, ...] = (8, 8, 4, 4),
        patch_sizes: tuple[int, ...] = (7, 3, 3, 3),
        strides: tuple[int, ...] = (4, 2, 2, 2),
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "avg",
        **kwargs,  # img_size and the like: a convolutional model takes any input size
    ):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.global_pool = global_pool
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        stages, cursor, chans = [], 0, in_chans
        for i, depth in enumerate(depths):
            stages.append(Stage(chans, embed_dims[i], mlp_ratios[i], patch_sizes[i], strides[i], drop_rate,
                                rates[cursor : cursor + depth]))  # fmt: skip
            cursor += depth
            chans = embed_dims[i]
        self.stages = nn.Sequential(*stages)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        self.feature_info = [
            {"num_chs": d, "reduction": math.prod(strides[: i + 1]), "module": f"stages.{i}"}
            for i, d in enumerate(embed_dims)
        ]
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
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
        return self.stages(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        if self.global_pool == "avg":
            x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _create_van(variant: str, pretrained: bool = False, **kwargs) -> VAN:
    if pretrained:
        raise ValueError("no pretrained VAN weights exist here: models are trained by pipelines.vision")
    return build_model_with_cfg(VAN, variant, pretrained, **kwargs)


def _cfg(**kwargs) -> dict:
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7), "crop_pct": 0.9,
        "interpolation": "bicubic", "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
        "first_conv": "stages.0.patch_embed.proj", "classifier": "head", **kwargs,
    }  # fmt: skip


default_cfgs = generate_default_cfgs({
    "van_b0": _cfg(), "van_b1": _cfg(), "van_b2": _cfg(), "van_b3": _cfg(), "van_b4": _cfg(),
    "van_b5": _cfg(), "van_b6": _cfg(),
    "van_small_input": _cfg(input_size=(1, 28, 28), pool_size=(2, 2), mean=(0.1307,), std=(0.3081,), num_classes=10),
})  # fmt: skip


@register_model
def van_b0(pretrained: bool = False, **kwargs) -> VAN:
    model_args = dict(embed_dims=(32, 64, 160, 256), depths=(3, 3, 5, 2), mlp_ratios=(8, 8, 4, 4))
    return _create_van("van_b0", pretrained, **dict(model_args, **kwargs))


@register_model
def van_b1(pretrained: bool = False, **kwargs) -> VAN:
    model_args = dict(embed_dims=(64, 128, 320, 512), depths=(2, 2, 4, 2), mlp_ratios=(8, 8, 4, 4))
    return _create_van("van_b1", pretrained, **dict(model_args, **kwargs))


@register_model
def van_b2(pretrained: bool = False, **kwargs) -> VAN:
    model_args = dict(embed_dims=(64, 128, 320, 512), depths=(3, 3, 12, 3), mlp_ratios=(8, 8, 4, 4))
    return _create_van("van_b2", pretrained, **dict(model_args, **kwargs))


@register_model
def van_b3(pretrained: bool = False, **kwargs) -> VAN:
    model_args = dict(embed_dims=(64, 128, 320, 512), depths=(3, 5, 27, 3), mlp_ratios=(8, 8, 4, 4))
    return _create_van("van_b3", pretrained, **dict(model_args, **kwargs))


@register_model
def van_b4(pretrained: bool = False, **kwargs) -> VAN:
    model_args = dict(embed_dims=(64, 128, 320, 512), depths=(3, 6, 40, 3), mlp_ratios=(8, 8, 4, 4))
    return _create_van("van_b4", pretrained, **dict(model_args, **kwargs))


@register_model
def van_b5(pretrained: bool = False, **kwargs) -> VAN:
    model_args = dict(embed_dims=(96, 192, 480, 768), depths=(3, 3, 24, 3), mlp_ratios=(8, 8, 4, 4))
    return _create_van("van_b5", pretrained, **dict(model_args, **kwargs))


@register_model
def van_b6(pretrained: bool = False, **kwargs) -> VAN:
    model_args = dict(embed_dims=(96, 192, 384, 768), depths=(6, 6, 90, 6), mlp_ratios=(8, 8, 4, 4))
    return _create_van("van_b6", pretrained, **dict(model_args, **kwargs))


@register_model
def van_small_input(pretrained: bool = False, **kwargs) -> VAN:
    """For 28–64 px images: stride 2 then 2, 2, 2 (28 px → 14, 7, 4, 2), VAN-B0 widths, 2 blocks a stage."""
    model_args = dict(embed_dims=(32, 64, 128, 160), depths=(2, 2, 2, 2), mlp_ratios=(4, 4, 4, 4),
                      patch_sizes=(3, 3, 3, 3), strides=(2, 2, 2, 2), in_chans=1, num_classes=10)  # fmt: skip
    return _create_van("van_small_input", pretrained, **dict(model_args, **kwargs))
