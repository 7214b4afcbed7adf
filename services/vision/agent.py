"""Agent Attention vision transformers (Han et al., ECCV 2024), on the core's agent attention.

* **Agent-DeiT**: DeiT (16×16 patches, a class token, learned positions, pre-norm blocks) whose attention
  is ``shared_attention.AgentAttention`` (49 agents pooled from the queries, agent aggregation then
  broadcast, agent biases, a depthwise-conv term) in the first ``agent_layers`` blocks (all, for T/S)
  and softmax attention after.
* **Agent-Swin**: the Swin-T layout (4×4 patches, patch merging, depths 2-2-6-2) with agent attention over
  the whole map in stages 1–3 (9, 16, 49 agents) and 7×7 window attention with a relative position bias
  in stage 4.

Registered in timm: ``agent_deit_tiny`` (6.0 M / 1.2 G at 224²), ``agent_deit_small`` (22.7 M / 4.4 G),
``agent_deit_base``, ``agent_swin_tiny`` (29 M / 4.5 G) and ``agent_deit_small_input`` for 28–64 px.
"""

from __future__ import annotations

import math

import torch
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import Tensor, nn

import shared_attention as sa

__all__ = ["AgentDeiT", "AgentSwin"]


class Block(nn.Module):
    """Pre-norm transformer block around any token attention ``[b, N, C] -> [b, N, C]``."""

    def __init__(self, dim: int, attention: nn.Module, mlp_ratio: float, drop: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = attention
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class _Heads:
    """timm's model surface shared by both layouts."""

    num_classes: int
    num_features: int
    head: nn.Module
    global_pool: str

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class AgentDeiT(_Heads, nn.Module):
    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        agent_num: int = 49,
        agent_layers: int | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "token",
    ):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size ({img_size}) must be a multiple of patch_size ({patch_size})")
        self.num_classes, self.global_pool = num_classes, global_pool
        self.num_features = self.head_hidden_size = embed_dim
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        agent_layers = depth if agent_layers is None else agent_layers

        def attention(i: int) -> nn.Module:
            if i < agent_layers:
                return sa.AgentAttention(embed_dim, num_heads, self.grid, agent_num=agent_num, num_prefix_tokens=1,
                                         proj_drop=drop_rate)  # fmt: skip
            return sa.SoftmaxAttention(embed_dim, num_heads, dropout=drop_rate)

        self.blocks = nn.Sequential(
            *(Block(embed_dim, attention(i), mlp_ratio, drop_rate, rates[i]) for i in range(depth))
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes else nn.Identity()
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        if tuple(x.shape[-2:]) != self.grid:
            raise ValueError(f"expected a {self.grid} patch grid (img_size fixed at build), got {tuple(x.shape[-2:])}")
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.blocks(self.pos_drop(x + self.pos_embed))
        return self.norm(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = x[:, 0] if self.global_pool == "token" else x[:, 1:].mean(dim=1)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def token_grid(self) -> tuple[int, int]:
        return self.grid


class WindowAttention(nn.Module):
    """Swin's window attention with a relative position bias, on ``[b, N, C]`` tokens of a ``grid``."""

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], window: int = 7):
        super().__init__()
        self.num_heads, self.grid = num_heads, grid
        self.window = min(window, grid[0], grid[1])
        w = self.window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * w - 1) ** 2, num_heads))
        trunc_normal_(self.bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (w - 1)
        self.register_buffer("bias_index", rel[..., 0] * (2 * w - 1) + rel[..., 1], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        gh, gw = self.grid
        w = self.window
        ph, pw = (-gh) % w, (-gw) % w
        x = nn.functional.pad(x.view(b, gh, gw, c), (0, 0, 0, pw, 0, ph))
        hh, ww = gh + ph, gw + pw
        windows = x.view(b, hh // w, w, ww // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)
        q, k, v = self.qkv(windows).view(windows.shape[0], w * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        bias = self.bias_table[self.bias_index].permute(2, 0, 1).unsqueeze(0)  # [1, heads, w², w²]
        valid = torch.zeros(hh, ww, dtype=torch.bool, device=x.device)
        valid[:gh, :gw] = True
        key_mask = valid.view(hh // w, w, ww // w, w).permute(0, 2, 1, 3).reshape(-1, w * w).repeat(b, 1)
        out = sa.softmax_attention(q, k, v, bias=bias, key_mask=key_mask)
        out = out.transpose(1, 2).reshape(-1, w * w, c)
        out = out.view(b, hh // w, ww // w, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hh, ww, c)
        return self.proj(out[:, :gh, :gw].reshape(b, n, c))


class PatchMerging(nn.Module):
    """2×2 neighbouring tokens concatenated (4C), normalised and projected to 2C."""

    def __init__(self, dim: int, grid: tuple[int, int]):
        super().__init__()
        self.grid = grid
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, _, c = x.shape
        gh, gw = self.grid
        x = nn.functional.pad(x.view(b, gh, gw, c), (0, 0, 0, gw % 2, 0, gh % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.flatten(1, 2)))


class AgentSwin(_Heads, nn.Module):
    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        agent_nums: tuple[int, ...] = (9, 16, 49, 49),
        attention_types: str = "AAAB",  # A: agent attention over the map, B: window attention
        window: int = 7,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "avg",
    ):
        super().__init__()
        self.num_classes, self.global_pool = num_classes, global_pool
        dims = [embed_dim * 2**i for i in range(len(depths))]
        self.num_features = self.head_hidden_size = dims[-1]
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.patch_norm = nn.LayerNorm(embed_dim)
        grid = (math.ceil(img_size / patch_size),) * 2
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages, self.merges, self.grids = nn.ModuleList(), nn.ModuleList(), []
        cursor = 0
        for i, depth in enumerate(depths):
            self.grids.append(grid)
            blocks = []
            for _ in range(depth):
                if attention_types[i] == "A":
                    attn = sa.AgentAttention(dims[i], num_heads[i], grid, agent_num=agent_nums[i], proj_drop=drop_rate)
                else:
                    attn = WindowAttention(dims[i], num_heads[i], grid, window)
                blocks.append(Block(dims[i], attn, mlp_ratio, drop_rate, rates[cursor]))
                cursor += 1
            self.stages.append(nn.Sequential(*blocks))
            if i < len(depths) - 1:
                self.merges.append(PatchMerging(dims[i], grid))
                grid = ((grid[0] + 1) // 2, (grid[1] + 1) // 2)
        self.norm = nn.LayerNorm(dims[-1])
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(dims[-1], num_classes) if num_classes else nn.Identity()
        self.apply(_init_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        if tuple(x.shape[-2:]) != self.grids[0]:
            raise ValueError(
                f"expected a {self.grids[0]} patch grid (img_size fixed at build), got {tuple(x.shape[-2:])}"
            )
        x = self.patch_norm(x.flatten(2).transpose(1, 2))
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.merges):
                x = self.merges[i](x)
        return self.norm(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.head_drop(x.mean(dim=1))
        return x if pre_logits else self.head(x)

    def token_grid(self) -> tuple[int, int]:
        return self.grids[-1]


def _create_agent_deit(variant: str, pretrained: bool = False, **kwargs) -> AgentDeiT:
    if pretrained:
        raise ValueError("no pretrained Agent Attention weights exist here: models are trained by pipelines.vision")
    return build_model_with_cfg(AgentDeiT, variant, pretrained, **kwargs)


def _create_agent_swin(variant: str, pretrained: bool = False, **kwargs) -> AgentSwin:
    if pretrained:
        raise ValueError("no pretrained Agent Attention weights exist here: models are trained by pipelines.vision")
    return build_model_with_cfg(AgentSwin, variant, pretrained, **kwargs)


def _cfg(**kwargs) -> dict:
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": None, "crop_pct": 0.875,
        "interpolation": "bicubic", "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
        "first_conv": "patch_embed", "classifier": "head", **kwargs,
    }  # fmt: skip


default_cfgs = generate_default_cfgs({
    "agent_deit_tiny": _cfg(), "agent_deit_small": _cfg(), "agent_deit_base": _cfg(), "agent_swin_tiny": _cfg(),
    "agent_deit_small_input": _cfg(input_size=(1, 28, 28), mean=(0.1307,), std=(0.3081,), num_classes=10),
})  # fmt: skip


@register_model
def agent_deit_tiny(pretrained: bool = False, **kwargs) -> AgentDeiT:
    model_args = dict(embed_dim=192, depth=12, num_heads=3)
    return _create_agent_deit("agent_deit_tiny", pretrained, **dict(model_args, **kwargs))


@register_model
def agent_deit_small(pretrained: bool = False, **kwargs) -> AgentDeiT:
    model_args = dict(embed_dim=384, depth=12, num_heads=6)
    return _create_agent_deit("agent_deit_small", pretrained, **dict(model_args, **kwargs))


@register_model
def agent_deit_base(pretrained: bool = False, **kwargs) -> AgentDeiT:
    model_args = dict(embed_dim=768, depth=12, num_heads=12, agent_layers=4)
    return _create_agent_deit("agent_deit_base", pretrained, **dict(model_args, **kwargs))


@register_model
def agent_swin_tiny(pretrained: bool = False, **kwargs) -> AgentSwin:
    model_args = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), agent_nums=(9, 16, 49, 49))
    return _create_agent_swin("agent_swin_tiny", pretrained, **dict(model_args, **kwargs))


@register_model
def agent_deit_small_input(pretrained: bool = False, **kwargs) -> AgentDeiT:
    """For 28–64 px images: 4×4 patches (28 px → a 7×7 grid), 9 agents, width 128, 6 blocks, 4 heads."""
    model_args = dict(img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=128, depth=6, num_heads=4,
                      agent_num=9, mlp_ratio=3.0)  # fmt: skip
    return _create_agent_deit("agent_deit_small_input", pretrained, **dict(model_args, **kwargs))
