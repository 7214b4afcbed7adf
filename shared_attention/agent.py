"""Agent attention (Han et al., ECCV 2024).

A small set of ``n`` agent tokens ``A`` (``n ≪ N``), pooled from the queries, first aggregates the
values and then broadcasts them back to every query:

    V_A = softmax(A Kᵀ · s + B₁) V          (agent aggregation, n × d)
    O   = softmax(Q Aᵀ · s + B₂) V_A        (agent broadcast,   N × d)
    out = O + DWC(V)                         (depthwise conv restores feature diversity)

``B₁``/``B₂`` are the agent biases (learned position terms between agents and tokens). The cost is
``O(N·n·d)``: agent attention is a generalised linear attention with ``φ_q(Q) = σ(QAᵀ)`` and
``φ_k(K) = σ(AKᵀ)ᵀ``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_key_mask, check_qkv, check_tensor
from .softmax import softmax_attention


def agent_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    agents: Tensor,
    *,
    agent_bias: Tensor | None = None,
    query_bias: Tensor | None = None,
    key_mask: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """Agent aggregation then broadcast over ``[batch, heads, seq, head_dim]`` tensors.

    Args:
        q, k, v: ``[b, h, N, d]`` (``v`` may have another width).
        agents: agent tokens ``[b, h, n, d]``.
        agent_bias: ``B₁`` broadcastable to ``[b, h, n, N]`` (agents → keys).
        query_bias: ``B₂`` broadcastable to ``[b, h, N, n]`` (queries → agents).
        key_mask: bool ``[b, N]``, True for real keys.
        scale: ``1/sqrt(d)`` when None.
    Returns:
        ``[b, h, N, d_v]`` (without the depthwise-conv term, which needs the spatial layout).
    """
    b, h, _, n_k, _ = check_qkv(q, k, v)
    check_tensor("agents", agents, 4)
    if agents.shape[0] != b or agents.shape[1] != h or agents.shape[3] != q.shape[3]:
        raise ValueError(f"agents must have shape [{b}, {h}, n, {q.shape[3]}], got {tuple(agents.shape)}")
    check_key_mask(key_mask, b, n_k)
    agent_values = softmax_attention(agents, k, v, key_mask=key_mask, bias=agent_bias, scale=scale)
    return softmax_attention(q, agents, agent_values, bias=query_bias, scale=scale)


class AgentAttention(nn.Module):
    """Agent attention layer over a ``grid`` of patch tokens, optionally after prefix (cls) tokens.

    Args:
        dim: token width.
        num_heads: number of heads.
        grid_size: ``(H, W)`` of the patch tokens (the agent biases are laid out on it).
        agent_num: number of agents, a perfect square (agents = ``√n × √n`` average pool of queries).
        num_prefix_tokens: tokens before the patch grid (e.g. a class token); they take part in the
            attention with their own learned agent biases but not in the pooling or the conv.
        dwc_kernel: kernel of the depthwise conv on the values.
        bias_size: side of the learned agent-bias tables, bilinearly resized to ``grid_size``.
    Input ``x [b, num_prefix_tokens + H·W, dim]``; output the same shape.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        grid_size: tuple[int, int],
        *,
        agent_num: int = 49,
        num_prefix_tokens: int = 0,
        qkv_bias: bool = True,
        dwc_kernel: int = 3,
        bias_size: int = 7,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        pool = math.isqrt(agent_num)
        if pool * pool != agent_num:
            raise ValueError(f"agent_num must be a perfect square, got {agent_num}")
        grid_h, grid_w = grid_size
        if grid_h < 1 or grid_w < 1:
            raise ValueError(f"grid_size must be positive, got {grid_size}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.grid_size = (grid_h, grid_w)
        self.agent_num, self.pool_size = agent_num, pool
        self.num_prefix_tokens = num_prefix_tokens
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.dwc = nn.Conv2d(dim, dim, dwc_kernel, padding=dwc_kernel // 2, groups=dim)
        # B₁ = table (resized) + row term + column term; B₂ likewise, in the other direction.
        self.agent_token_table = nn.Parameter(torch.zeros(num_heads, agent_num, bias_size, bias_size))
        self.token_agent_table = nn.Parameter(torch.zeros(num_heads, agent_num, bias_size, bias_size))
        self.agent_row = nn.Parameter(torch.zeros(num_heads, agent_num, grid_h, 1))
        self.agent_col = nn.Parameter(torch.zeros(num_heads, agent_num, 1, grid_w))
        self.row_agent = nn.Parameter(torch.zeros(num_heads, grid_h, 1, agent_num))
        self.col_agent = nn.Parameter(torch.zeros(num_heads, 1, grid_w, agent_num))
        self.agent_prefix = nn.Parameter(torch.zeros(num_heads, agent_num, num_prefix_tokens))
        self.prefix_agent = nn.Parameter(torch.zeros(num_heads, num_prefix_tokens, agent_num))
        for p in (
            self.agent_token_table, self.token_agent_table, self.agent_row, self.agent_col,
            self.row_agent, self.col_agent, self.agent_prefix, self.prefix_agent,
        ):  # fmt: skip
            nn.init.trunc_normal_(p, std=0.02)

    def biases(self) -> tuple[Tensor, Tensor]:
        """``(B₁ [h, n, P + H·W], B₂ [h, P + H·W, n])`` for the current parameters."""
        h, n = self.num_heads, self.agent_num
        gh, gw = self.grid_size
        table1 = F.interpolate(self.agent_token_table, size=(gh, gw), mode="bilinear", align_corners=False)
        b1 = (table1 + self.agent_row + self.agent_col).reshape(h, n, gh * gw)
        table2 = F.interpolate(self.token_agent_table, size=(gh, gw), mode="bilinear", align_corners=False)
        b2 = (table2.permute(0, 2, 3, 1) + self.row_agent + self.col_agent).reshape(h, gh * gw, n)
        return torch.cat([self.agent_prefix, b1], dim=2), torch.cat([self.prefix_agent, b2], dim=1)

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        check_tensor("x", x, 3)
        b, n_tokens, c = x.shape
        gh, gw = self.grid_size
        prefix = self.num_prefix_tokens
        if c != self.dim or n_tokens != prefix + gh * gw:
            raise ValueError(
                f"x must have shape [b, {prefix + gh * gw}, {self.dim}] for grid {self.grid_size} "
                f"and {prefix} prefix tokens, got {tuple(x.shape)}"
            )
        q, k, v = self.qkv(x).view(b, n_tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        patch_q = q[:, :, prefix:].reshape(b * self.num_heads, gh, gw, self.head_dim).permute(0, 3, 1, 2)
        agents = F.adaptive_avg_pool2d(patch_q, self.pool_size)  # [b·h, d, √n, √n]
        agents = agents.reshape(b, self.num_heads, self.head_dim, self.agent_num).transpose(-1, -2)
        agent_bias, query_bias = self.biases()
        out = agent_attention(
            q,
            k,
            v,
            agents,
            agent_bias=agent_bias.unsqueeze(0),
            query_bias=query_bias.unsqueeze(0),
            key_mask=key_mask,
            scale=self.scale,
        )
        out = out.transpose(1, 2).reshape(b, n_tokens, c)
        patch_v = v[:, :, prefix:].transpose(1, 2).reshape(b, gh, gw, c).permute(0, 3, 1, 2)
        local = self.dwc(patch_v).permute(0, 2, 3, 1).reshape(b, gh * gw, c)
        out = torch.cat([out[:, :prefix], out[:, prefix:] + local], dim=1)
        return self.proj_drop(self.proj(out))
