"""Naive float64 references for the attention core.

Written for reading, not speed: explicit per-position loops and full matrices, sharing no code with
``shared_attention`` beyond torch itself. Every test compares the library (in float32) against these
(in float64). They compute on the device of their inputs (the kernel tests run them on a GPU).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

F64 = torch.float64


def visible_matrix(n_q: int, n_k: int, causal: bool, key_mask_row: Tensor | None) -> Tensor:
    """Bool [n_q, n_k] for one batch entry, built element by element."""
    vis = torch.ones(n_q, n_k, dtype=torch.bool)
    for i in range(n_q):
        for j in range(n_k):
            if causal and j > i + (n_k - n_q):
                vis[i, j] = False
            if key_mask_row is not None and not bool(key_mask_row[j]):
                vis[i, j] = False
    return vis


def _loop(q, k, v, causal, key_mask, bias, row_weights):
    """Generic driver: for every (batch, head, query) build the score row and let row_weights turn it
    into weights over visible keys."""
    q, k, v = q.to(F64), k.to(F64), v.to(F64)
    b, h, n_q, _ = q.shape
    n_k = k.shape[2]
    out = torch.zeros(b, h, n_q, v.shape[-1], dtype=F64, device=q.device)
    for bi in range(b):
        vis = visible_matrix(n_q, n_k, causal, None if key_mask is None else key_mask[bi].cpu()).to(q.device)
        for hi in range(h):
            scores = q[bi, hi] @ k[bi, hi].T
            if bias is not None:
                scores = scores + bias.to(F64).expand(b, h, n_q, n_k)[bi, hi]
            for i in range(n_q):
                w = row_weights(scores[i], vis[i], bi)
                out[bi, hi, i] = w @ v[bi, hi]
    return out


def softmax_ref(q, k, v, *, causal=False, key_mask=None, bias=None, scale=None):
    s = q.shape[-1] ** -0.5 if scale is None else scale
    # the scale multiplies q·k before the bias is added: fold it into q
    return _loop(q.to(F64) * s, k, v, causal, key_mask, bias, _softmax_row)


def _softmax_row(scores, vis, _):
    if not bool(vis.any()):
        return torch.zeros_like(scores)
    x = scores.masked_fill(~vis, -math.inf)
    e = torch.exp(x - x.max())
    return e / e.sum()


def sigmoid_ref(q, k, v, *, causal=False, key_mask=None, bias=None, b_value=None, scale=None):
    s = q.shape[-1] ** -0.5 if scale is None else scale
    n_k = k.shape[2]

    def row(scores, vis, bi):
        if b_value is not None:
            offset = b_value
        else:
            n = n_k if key_mask is None else int(key_mask[bi].sum())
            offset = -math.log(max(n, 1))
        w = 1.0 / (1.0 + torch.exp(-(scores + offset)))
        return torch.where(vis, w, torch.zeros_like(w))

    return _loop(q.to(F64) * s, k, v, causal, key_mask, bias, row)


def softplus_ref(q, k, v, *, causal=False, key_mask=None, bias=None, train_length=512, power=None, scale=None):
    s = q.shape[-1] ** -0.5 if scale is None else scale

    def row(scores, vis, _):
        n = int(vis.sum())
        if n == 0:
            return torch.zeros_like(scores)
        lam = math.log(n) / math.log(train_length)
        raw = torch.log1p(torch.exp(lam * scores))
        raw = torch.where(vis, raw, torch.zeros_like(raw))
        a = raw / raw.sum()
        if power is None:
            return a
        sharp = torch.clamp(n * a - 1.0, min=0.0) ** power
        sharp = torch.where(vis, sharp, torch.zeros_like(sharp))
        return a if float(sharp.detach().sum()) == 0.0 else sharp / sharp.sum()

    return _loop(q.to(F64) * s, k, v, causal, key_mask, bias, row)


def lightning_ref(q, k, v, slopes, *, causal=True, key_mask=None):
    """o_t = Σ_j λ^{|t-j|} (q_t·k_j) v_j over j ≤ t (causal) or all j, with λ = exp(-slope): the full
    [n, n] matrix of weights λ^{|t-j|}·(q_t·k_j), zeroed where j is not visible, times V."""
    q, k, v = q.to(F64), k.to(F64), v.to(F64)
    n = q.shape[2]
    positions = torch.arange(n, device=q.device)
    distance = (positions[:, None] - positions[None, :]).abs().to(F64)  # |t - j|
    decay = torch.exp(-slopes.to(device=q.device, dtype=F64)[:, None, None] * distance)  # [h, n, n]
    visible = torch.ones(n, n, dtype=torch.bool, device=q.device)
    if causal:
        visible = positions[None, :] <= positions[:, None]
    visible = visible.expand(q.shape[0], n, n)
    if key_mask is not None:
        visible = visible & key_mask.to(q.device)[:, None, :]
    weights = (q @ k.transpose(-1, -2)) * decay[None] * visible[:, None].to(F64)
    return weights @ v


def window_mean_ref(x, window, mask):
    """x [b, n, c]; mean over real items among positions t-window+1..t."""
    x = x.to(F64)
    b, n, _ = x.shape
    out = torch.zeros_like(x)
    for bi in range(b):
        for t in range(n):
            members = [j for j in range(max(0, t - window + 1), t + 1) if mask is None or bool(mask[bi, j])]
            if members:
                out[bi, t] = x[bi, members].mean(0)
    return out


def direct_causal_conv(u: Tensor, h: Tensor) -> Tensor:
    """y[b, c, t] = Σ_{s=0..t} h[c, s] u[b, c, t-s], by loops."""
    u, h = u.to(F64), h.to(F64)
    b, c, n = u.shape
    y = torch.zeros(b, c, n, dtype=F64)
    for t in range(n):
        for s in range(t + 1):
            y[:, :, t] += h[:, s] * u[:, :, t - s]
    return y


def pointer_ref(keys, query, v, mask=None, clip=None):
    """keys [b, n, H], query [b, H], v [H] → log-probs [b, n]."""
    keys, query, v = keys.to(F64), query.to(F64), v.to(F64)
    b, n, _ = keys.shape
    out = torch.zeros(b, n, dtype=F64)
    for bi in range(b):
        u = torch.stack([v @ torch.tanh(keys[bi, j] + query[bi]) for j in range(n)])
        if clip is not None:
            u = clip * torch.tanh(u)
        allowed = [j for j in range(n) if mask is None or bool(mask[bi, j])]
        log_z = torch.logsumexp(u[allowed], dim=0)
        for j in range(n):
            out[bi, j] = u[j] - log_z if j in allowed else -math.inf
    return out


def max_rel_err(actual: Tensor, expected: Tensor) -> float:
    """‖actual - expected‖_∞ / ‖expected‖_∞ (finite entries must match; infinities must coincide)."""
    a, e = actual.detach().to(F64), expected.detach().to(F64)
    finite = torch.isfinite(e)
    assert torch.equal(finite, torch.isfinite(a)), "non-finite entries differ"
    if not bool(finite.any()):
        return 0.0
    scale = e[finite].abs().max().clamp_min(1e-30)
    return float((a[finite] - e[finite]).abs().max() / scale)
