"""Pointer attention: a decoder state points at one of the encoder positions ``e_1..e_n``.

Additive (Pointer Networks, Vinyals et al., 2015)::

    u_j = vᵀ tanh(W₁ e_j + W₂ d)           (optionally clipped: u_j ← C · tanh(u_j), Bello et al.)

Compatibility (the attention model of Kool et al., 2019: a single-head query against the node keys)::

    u_j = C · tanh(qᵀ k_j / √d),  k_j = W_K e_j    (C = 10)

and in both ``log p(j | d) = log_softmax_j(u_j)`` with ``u_j = -∞`` where position j is not allowed.

The output is a distribution over input positions rather than a blend of them, so the output
vocabulary is the input itself (convex hull, Delaunay, TSP).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import check_tensor


def pointer_log_probs(
    keys: Tensor,
    query: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    clip: float | None = None,
) -> Tensor:
    """Pointer log-probabilities from projected encoder keys and decoder queries.

    Args:
        keys: ``W₁ e`` for every input position, ``[b, n, hidden]``.
        query: ``W₂ d`` for one decoder step ``[b, hidden]`` or ``T`` steps ``[b, T, hidden]``.
        v: ``[hidden]``.
        mask: bool ``[b, n]`` or ``[b, T, n]``, True where pointing is allowed.
        clip: ``C`` for ``C · tanh(u)`` logit clipping (None: no clipping).
    Returns:
        ``[b, n]`` or ``[b, T, n]`` log-probabilities (``-inf`` where not allowed).
    Raises:
        ValueError: when a row allows no position at all.
    """
    check_tensor("keys", keys, 3)
    check_tensor("query", query, (2, 3))
    check_tensor("v", v, 1)
    b, _, hidden = keys.shape
    if query.shape[0] != b or query.shape[-1] != hidden or v.shape[0] != hidden:
        raise ValueError(
            f"query must be [{b}, (T,) {hidden}] and v [{hidden}]; got {tuple(query.shape)}, {tuple(v.shape)}"
        )
    single = query.ndim == 2
    q = query.unsqueeze(1) if single else query  # [b, T, hidden]
    scores = torch.tanh(keys.unsqueeze(1) + q.unsqueeze(2)) @ v  # [b, T, n]
    return _clipped_log_probs(scores, mask, clip, single)


def compatibility_log_probs(keys: Tensor, query: Tensor, *, mask: Tensor | None = None, clip: float = 10.0) -> Tensor:
    """Kool et al.'s final pointer: ``C · tanh(qᵀ k_j / √d)`` log-probabilities.

    Args:
        keys: ``W_K e`` for every input position, ``[b, n, d]``.
        query: ``[b, d]`` (one step) or ``[b, T, d]``.
        mask: bool ``[b, n]`` or ``[b, T, n]``, True where pointing is allowed.
        clip: ``C`` (10 in the paper).
    Returns:
        ``[b, n]`` or ``[b, T, n]`` log-probabilities (``-inf`` where not allowed).
    """
    check_tensor("keys", keys, 3)
    check_tensor("query", query, (2, 3))
    b, _, d = keys.shape
    if query.shape[0] != b or query.shape[-1] != d:
        raise ValueError(f"query must be [{b}, (T,) {d}], got {tuple(query.shape)}")
    single = query.ndim == 2
    q = query.unsqueeze(1) if single else query
    scores = q @ keys.transpose(1, 2) / d**0.5  # [b, T, n]
    return _clipped_log_probs(scores, mask, clip, single)


def _clipped_log_probs(scores: Tensor, mask: Tensor | None, clip: float | None, single: bool) -> Tensor:
    """``log_softmax(C · tanh(scores))`` over the allowed positions of ``scores [b, T, n]``."""
    b, t, n = scores.shape
    if clip is not None:
        if not clip > 0:
            raise ValueError(f"clip must be positive, got {clip}")
        scores = clip * torch.tanh(scores)
    if mask is not None:
        want = (b, n) if single else (b, t, n)
        if mask.dtype != torch.bool or tuple(mask.shape) != want:
            raise ValueError(f"mask must be a bool tensor of shape {want}, got {mask.dtype} {tuple(mask.shape)}")
        m = mask.unsqueeze(1) if single else mask
        if not bool(m.any(dim=-1).all()):
            raise ValueError("mask leaves a row with no position to point at")
        scores = scores.masked_fill(~m, float("-inf"))
    log_probs = torch.log_softmax(scores, dim=-1)
    return log_probs.squeeze(1) if single else log_probs


class PointerAttention(nn.Module):
    """``u_j = vᵀ tanh(W₁ e_j + W₂ d)`` with its parameters; :meth:`project_keys` caches ``W₁ e``.

    Args:
        encoder_dim, decoder_dim: widths of ``e`` and ``d``.
        hidden: width of the additive attention (``v``'s length).
        clip: optional logit clipping ``C``.
    """

    def __init__(self, encoder_dim: int, decoder_dim: int, hidden: int, clip: float | None = None):
        super().__init__()
        self.w1 = nn.Linear(encoder_dim, hidden, bias=False)
        self.w2 = nn.Linear(decoder_dim, hidden, bias=False)
        self.v = nn.Parameter(torch.empty(hidden).uniform_(-(hidden**-0.5), hidden**-0.5))
        self.clip = clip

    def project_keys(self, encoded: Tensor) -> Tensor:
        """``W₁ e`` for ``encoded [b, n, encoder_dim]``; compute once per instance, reuse every step."""
        return self.w1(encoded)

    def forward(self, keys: Tensor, decoder_state: Tensor, mask: Tensor | None = None) -> Tensor:
        """Log-probabilities over positions for ``decoder_state [b, (T,) decoder_dim]``."""
        return pointer_log_probs(keys, self.w2(decoder_state), self.v, mask=mask, clip=self.clip)


class CompatibilityPointer(nn.Module):
    """``C · tanh(qᵀ W_K e_j / √d)`` with its key projection; :meth:`project_keys` caches ``W_K e``."""

    def __init__(self, dim: int, clip: float = 10.0):
        super().__init__()
        self.w_k = nn.Linear(dim, dim, bias=False)
        self.clip = clip

    def project_keys(self, encoded: Tensor) -> Tensor:
        return self.w_k(encoded)

    def forward(self, keys: Tensor, query: Tensor, mask: Tensor | None = None) -> Tensor:
        return compatibility_log_probs(keys, query, mask=mask, clip=self.clip)
