"""Softplus attention with a length-dependent scale and re-weighting (Gao & Spratling, 2025).

Softmax = a positive transform (``exp``) followed by ℓ1 row normalisation; the paper keeps the
normalisation and replaces ``exp`` by Softplus, with a scale that grows with the number of keys a row
sees so that the attention entropy stays put when sequences get longer than in training (LSSA):

    x_ij = q_i·k_j · s + B_ij                       (s = 1/√d)
    λ_i  = log n_i / log n_train                    (n_i = keys visible to query i)
    A_ij = softplus(λ_i x_ij) / Σ_j softplus(λ_i x_ij)      over visible j

Re-weighting (LSSAR) sharpens the normalised weights without retraining: weights above the row's
uniform level ``1/n_i`` are amplified by a power ``p``, the rest are dropped, and the row is
re-normalised:

    R_ij = relu(n_i A_ij - 1)^p / Σ_j relu(n_i A_ij - 1)^p

A row whose weights are all at or below uniform (so the numerator vanishes) keeps ``A``. The paper's
exact constants could not be checked against its code here; this module implements the equations
above, which follow the paper's description (ℓ1 normalisation, ``log n`` scale, power re-weighting).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import (
    check_alibi,
    check_bias,
    check_key_lengths,
    check_key_mask,
    check_qkv,
    merge_padding,
)
from ._rows import rowwise_attention
from .multihead import MultiHeadAttention
from .positional import with_alibi


def softplus_weights(scores: Tensor, visible: Tensor, *, train_length: int, reweight_power: float | None) -> Tensor:
    """LSSA / LSSAR weights for a block of score rows (``visible`` broadcasts to ``scores``)."""
    visible = visible.expand_as(scores)
    n_i = visible.sum(dim=-1, keepdim=True).to(scores.dtype)
    length_scale = torch.log(n_i.clamp_min(1.0)) / math.log(train_length)
    # Masking after the transform: softplus(λ·(-inf)) is NaN when λ = 0 (a single visible key).
    raw = F.softplus(length_scale * scores.masked_fill(~visible, 0.0)) * visible
    weights = raw / raw.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)
    if reweight_power is None:
        return weights
    sharp = torch.relu(n_i * weights - 1.0).pow(reweight_power) * visible
    total = sharp.sum(dim=-1, keepdim=True)
    reweighted = sharp / total.clamp_min(torch.finfo(scores.dtype).tiny)
    return torch.where(total > 0, reweighted, weights)


def softplus_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    key_mask: Tensor | None = None,
    key_lengths: Tensor | None = None,
    bias: Tensor | None = None,
    alibi: Tensor | None = None,
    train_length: int = 512,
    reweight_power: float | None = None,
    scale: float | None = None,
) -> Tensor:
    """Softplus attention (LSSA), optionally re-weighted (LSSAR), over ``[b, h, seq, d]`` tensors.

    Args:
        q, k, v, causal, key_mask, key_lengths, bias, alibi, scale: as in :func:`softmax_attention`.
        train_length: ``n_train`` of the length scale ``log n / log n_train`` (at least 2).
        reweight_power: the power ``p >= 1`` of the re-weighting; None for plain LSSA.
    Returns:
        ``[b, h, n_q, d_v]``.
    """
    b, h, n_q, n_k, _ = check_qkv(q, k, v)
    key_mask = merge_padding(check_key_mask(key_mask, b, n_k), check_key_lengths(key_lengths, b, n_k), n_k)
    bias = with_alibi(check_bias(bias, b, h, n_q, n_k), check_alibi(alibi, h), n_q, n_k, causal)
    if not isinstance(train_length, int) or train_length < 2:
        raise ValueError(f"train_length must be an int >= 2, got {train_length!r}")
    if reweight_power is not None and not reweight_power >= 1:
        raise ValueError(f"reweight_power must be >= 1 (or None), got {reweight_power}")
    s = q.shape[-1] ** -0.5 if scale is None else float(scale)

    def weights(scores: Tensor, visible: Tensor, rows: slice) -> Tensor:
        return softplus_weights(scores, visible, train_length=train_length, reweight_power=reweight_power)

    return rowwise_attention(q, k, v, scale=s, causal=causal, key_mask=key_mask, bias=bias, weights_fn=weights)


class SoftplusAttention(MultiHeadAttention):
    """Multi-head softplus attention layer (LSSA; LSSAR when ``reweight_power`` is set).

    ``reweight_power`` can be changed after training (the re-weighting needs no fine-tuning).
    """

    mechanism = "softplus"

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        train_length: int = 512,
        reweight_power: float | None = None,
        **kwargs,
    ):
        super().__init__(dim, num_heads, **kwargs)
        if not isinstance(train_length, int) or train_length < 2:
            raise ValueError(f"train_length must be an int >= 2, got {train_length!r}")
        self.train_length = train_length
        self.reweight_power = reweight_power

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        key_mask: Tensor | None,
        bias: Tensor | None,
        alibi: Tensor | None,
    ) -> Tensor:
        return softplus_attention(
            q,
            k,
            v,
            causal=self.causal,
            key_mask=key_mask,
            bias=bias,
            alibi=alibi,
            train_length=self.train_length,
            reweight_power=self.reweight_power,
        )
