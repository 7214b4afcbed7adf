"""The multi-head layer shared by the sequence mechanisms (softmax, sigmoid, softplus, lightning).

``x [batch, seq, dim]`` is projected to heads, given positional terms (RoPE or ALiBi) when asked,
passed to the mechanism's function, and projected back. Subclasses only say which function to call
and with which extra arguments, so a model picks its mechanism by name from config (see
``shared_attention.registry``) and everything else stays the same.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import ClassVar

from torch import Tensor, nn

from ._checks import check_key_mask, check_tensor
from .positional import RotaryEmbedding, alibi_slopes

POSITIONAL_KINDS = (None, "rope", "alibi")


class MultiHeadAttention(nn.Module, metaclass=ABCMeta):
    """Multi-head attention layer around one of the core's sequence mechanisms.

    Args:
        dim: model width of the queries' input.
        num_heads: number of heads.
        head_dim: per-head width (``dim // num_heads`` when None).
        causal: causal masking (queries aligned with the end of the keys).
        positional: None, ``"rope"`` (rotary on q and k) or ``"alibi"`` (causal or symmetric bias,
            following ``causal``).
        context_dim: width of the key/value input for cross attention (``dim`` when None).
        qkv_bias: bias in the input projections.
        dropout: dropout on the output projection.
    """

    mechanism: ClassVar[str] = ""
    supports_bias: ClassVar[bool] = True
    supports_cross: ClassVar[bool] = True

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        head_dim: int | None = None,
        causal: bool = False,
        positional: str | None = None,
        context_dim: int | None = None,
        qkv_bias: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        if num_heads < 1 or dim < 1:
            raise ValueError(f"dim and num_heads must be positive, got dim={dim}, num_heads={num_heads}")
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
            head_dim = dim // num_heads
        if positional not in POSITIONAL_KINDS:
            raise ValueError(f"positional must be one of {POSITIONAL_KINDS}, got {positional!r}")
        if positional == "alibi" and not self.supports_bias:
            raise ValueError(f"{type(self).__name__} does not take an additive bias, so not ALiBi")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, head_dim
        self.causal = causal
        self.positional = positional
        inner = num_heads * head_dim
        context_dim = dim if context_dim is None else context_dim
        self.q_proj = nn.Linear(dim, inner, bias=qkv_bias)
        self.k_proj = nn.Linear(context_dim, inner, bias=qkv_bias)
        self.v_proj = nn.Linear(context_dim, inner, bias=qkv_bias)
        self.out_proj = nn.Linear(inner, dim)
        self.dropout = nn.Dropout(dropout)
        self.rope = RotaryEmbedding(head_dim) if positional == "rope" else None
        if positional == "alibi":
            self.register_buffer("alibi", alibi_slopes(num_heads), persistent=False)

    def heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, -1).transpose(1, 2)

    def merge(self, x: Tensor) -> Tensor:
        b, _, n, _ = x.shape
        return x.transpose(1, 2).reshape(b, n, -1)

    @abstractmethod
    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        key_mask: Tensor | None,
        bias: Tensor | None,
        alibi: Tensor | None,
    ) -> Tensor:
        """Call the mechanism on ``[b, h, n, d]`` tensors (``alibi``: slopes, or None)."""

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        key_mask: Tensor | None = None,
        bias: Tensor | None = None,
    ) -> Tensor:
        """``x [b, n_q, dim]`` attends to ``context [b, n_k, context_dim]`` (``x`` itself when None).

        ``key_mask`` is bool ``[b, n_k]`` (True = real token); ``bias`` an extra additive score bias.
        """
        check_tensor("x", x, 3)
        if x.shape[-1] != self.dim:
            raise ValueError(f"x must have last dim {self.dim}, got {x.shape[-1]}")
        if context is not None:
            if not self.supports_cross:
                raise ValueError(f"{type(self).__name__} supports self attention only (context must be None)")
            check_tensor("context", context, 3)
            if context.shape[0] != x.shape[0]:
                raise ValueError(f"context must have batch {x.shape[0]}, got {context.shape[0]}")
        source = x if context is None else context
        if source.shape[-1] != self.k_proj.in_features:
            raise ValueError(f"context must have last dim {self.k_proj.in_features}, got {source.shape[-1]}")
        check_key_mask(key_mask, x.shape[0], source.shape[1])
        if bias is not None and not self.supports_bias:
            raise ValueError(f"{type(self).__name__} does not take an additive bias")

        q = self.heads(self.q_proj(x))
        k = self.heads(self.k_proj(source))
        v = self.heads(self.v_proj(source))
        if self.rope is not None:
            q, k = self.rope(q, k)
        alibi = self.alibi if self.positional == "alibi" else None
        out = self.attend(q, k, v, key_mask, bias, alibi)
        return self.dropout(self.out_proj(self.merge(out)))

    def extra_repr(self) -> str:
        return (
            f"mechanism={self.mechanism!r}, dim={self.dim}, heads={self.num_heads}, "
            f"head_dim={self.head_dim}, causal={self.causal}, positional={self.positional!r}"
        )
