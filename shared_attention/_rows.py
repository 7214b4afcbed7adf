"""Row-blocked evaluation for attention whose weights are a function of one score row at a time.

Sigmoid and softplus attention normalise (or not) each query row independently, so the ``n_q × n_k``
score matrix never needs to exist at once: we walk over blocks of query rows, which bounds the memory
of the forward pass to ``rows × n_k`` per head while staying exact.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

# Elements of one block's score tensor (b·h·rows·n_k); 2^22 fp32 values = 16 MiB, small enough that
# the element-wise passes over a block stay in cache-friendly sizes.
_BLOCK_ELEMENTS = 1 << 22
_COLUMN_QUANTUM = 1024


def row_block_size(batch: int, heads: int, n_q: int, n_k: int) -> int:
    return max(16, min(n_q, _BLOCK_ELEMENTS // max(1, batch * heads * n_k)))


def rowwise_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: float,
    causal: bool,
    key_mask: Tensor | None,
    bias: Tensor | None,
    weights_fn: Callable[[Tensor, Tensor, slice], Tensor],
) -> Tensor:
    """``O[rows] = weights_fn(scores[rows], visible[rows], rows) @ V`` over blocks of query rows.

    ``scores`` are ``Q Kᵀ · scale + bias`` (float32 or wider), ``visible`` a bool mask broadcastable to
    the scores (True where the key may be attended). ``weights_fn`` must return zero weight on
    invisible keys.
    """
    b, h, n_q, _ = q.shape
    n_k = k.shape[2]
    compute_dtype = torch.promote_types(q.dtype, torch.float32)
    kt = k.transpose(-1, -2).to(compute_dtype)
    vc = v.to(compute_dtype)
    km = key_mask.view(b, 1, 1, n_k) if key_mask is not None else None
    step = row_block_size(b, h, n_q, n_k)
    # One preallocated output written block by block: keeping a list of blocks interleaves small live
    # allocations with the big transient ones and fragments the heap (RSS then grows with n²).
    out = torch.empty(b, h, n_q, v.shape[-1], dtype=compute_dtype, device=q.device)
    for start in range(0, n_q, step):
        rows = slice(start, min(n_q, start + step))
        # under causality these rows see no key past the last row's diagonal: skip those columns
        # (rounded up to whole blocks of columns, so that few distinct buffer sizes are ever requested)
        last = rows.stop + n_k - n_q
        cols = slice(0, max(1, min(n_k, -(-last // _COLUMN_QUANTUM) * _COLUMN_QUANTUM)) if causal else n_k)
        scores = torch.matmul(q[:, :, rows].to(compute_dtype) * scale, kt[..., cols])
        if bias is not None:
            bias_rows = bias if bias.shape[-2] == 1 else bias[..., rows, :]
            scores = scores + bias_rows[..., cols].to(compute_dtype)
        visible = torch.ones((1, 1, 1, 1), dtype=torch.bool, device=q.device)
        if causal:  # built per block: a full n_q × n_k mask would dominate memory at long lengths
            row_ids = torch.arange(rows.start, rows.stop, device=q.device).view(-1, 1) + (n_k - n_q)
            visible = visible & (torch.arange(cols.stop, device=q.device).view(1, -1) <= row_ids)
        if km is not None:
            visible = visible & km[..., cols]
        out[:, :, rows] = torch.matmul(weights_fn(scores, visible, rows), vc[:, :, cols])
    return out.to(v.dtype)
