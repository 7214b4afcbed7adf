"""Argument checks shared by the attention functions.

Every public function validates its inputs here so that a caller (and, through the services, an HTTP
client) gets a ``ValueError``/``TypeError`` that names the offending argument instead of a shape error
from deep inside a matmul.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_tensor(name: str, x: object, ndim: int | tuple[int, ...] | None = None) -> Tensor:
    """``x`` must be a floating tensor (of rank ``ndim`` when given)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if x.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{name} must have rank {want}, got shape {tuple(x.shape)}")
    return x


def check_qkv(q: Tensor, k: Tensor, v: Tensor, *, same_length: bool = False) -> tuple[int, int, int, int, int]:
    """Check the ``[batch, heads, seq, head_dim]`` layout; return ``(batch, heads, n_q, n_k, d_v)``.

    ``q`` and ``k`` share ``head_dim``; ``k`` and ``v`` share ``seq``; batch and heads must agree.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, t, 4)
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got dtype {t.dtype}")
    b, h, n_q, d = q.shape
    if k.shape[0] != b or v.shape[0] != b:
        raise ValueError(f"k and v must have batch {b} like q, got {k.shape[0]} and {v.shape[0]}")
    if k.shape[1] != h or v.shape[1] != h:
        raise ValueError(f"k and v must have {h} heads like q, got {k.shape[1]} and {v.shape[1]}")
    if k.shape[3] != d:
        raise ValueError(f"k must have head_dim {d} like q, got {k.shape[3]}")
    if v.shape[2] != k.shape[2]:
        raise ValueError(f"v must have seq {k.shape[2]} like k, got {v.shape[2]}")
    if n_q == 0 or k.shape[2] == 0:
        raise ValueError(f"seq must be at least 1, got q seq {n_q} and k seq {k.shape[2]}")
    if d == 0 or v.shape[3] == 0:
        raise ValueError("head_dim must be at least 1")
    if same_length and n_q != k.shape[2]:
        raise ValueError(f"q and k must have the same seq for this mechanism, got {n_q} and {k.shape[2]}")
    if q.dtype != k.dtype or q.dtype != v.dtype:
        raise TypeError(f"q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    return b, h, n_q, k.shape[2], v.shape[3]


def check_key_mask(key_mask: Tensor | None, batch: int, n_k: int, name: str = "key_mask") -> Tensor | None:
    """A key mask is a bool ``[batch, n_k]`` tensor, True for real keys and False for padding."""
    if key_mask is None:
        return None
    check_tensor(name, key_mask, 2)
    if key_mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor (True = real token), got dtype {key_mask.dtype}")
    if tuple(key_mask.shape) != (batch, n_k):
        raise ValueError(f"{name} must have shape {(batch, n_k)}, got {tuple(key_mask.shape)}")
    return key_mask


def check_bias(bias: Tensor | None, batch: int, heads: int, n_q: int, n_k: int) -> Tensor | None:
    """An additive score bias must broadcast to ``[batch, heads, n_q, n_k]``."""
    if bias is None:
        return None
    check_tensor("bias", bias, (2, 3, 4))
    target = (batch, heads, n_q, n_k)
    shape = (1,) * (4 - bias.ndim) + tuple(bias.shape)
    for have, want in zip(shape, target):
        if have not in (1, want):
            raise ValueError(f"bias of shape {tuple(bias.shape)} does not broadcast to {target}")
    return bias


def check_positive(name: str, value: float | int) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")


def causal_mask(n_q: int, n_k: int, device: torch.device | None = None) -> Tensor:
    """Bool ``[n_q, n_k]``: query ``i`` sees key ``j`` iff ``j <= i + (n_k - n_q)``.

    Queries are aligned with the *end* of the keys, so a block of new queries appended to a cache of
    earlier keys sees the whole cache (the usual convention for decoding); with ``n_q == n_k`` this is
    the lower triangle.
    """
    offset = n_k - n_q
    i = torch.arange(n_q, device=device).unsqueeze(1)
    j = torch.arange(n_k, device=device).unsqueeze(0)
    return j <= i + offset


def visibility(
    batch: int,
    n_q: int,
    n_k: int,
    *,
    causal: bool,
    key_mask: Tensor | None,
    device: torch.device,
) -> Tensor | None:
    """Combine causality and key padding into one bool mask broadcastable to ``[b, 1, n_q, n_k]``.

    Returns None when every key is visible to every query.
    """
    mask = None
    if causal:
        mask = causal_mask(n_q, n_k, device).view(1, 1, n_q, n_k)
    if key_mask is not None:
        km = key_mask.view(batch, 1, 1, n_k)
        mask = km if mask is None else (mask & km)
    return mask


def check_key_lengths(key_lengths: Tensor | None, batch: int, n_k: int) -> Tensor | None:
    """Per-sequence key lengths: an integer ``[batch]`` tensor with values in ``[0, n_k]`` (keys at or
    beyond a sequence's length are padding). Values are checked on CPU tensors only (no device sync)."""
    if key_lengths is None:
        return None
    check_tensor("key_lengths", key_lengths, 1)
    if key_lengths.dtype.is_floating_point or key_lengths.dtype == torch.bool:
        raise TypeError(f"key_lengths must be an integer tensor, got dtype {key_lengths.dtype}")
    if key_lengths.shape[0] != batch:
        raise ValueError(f"key_lengths must have shape [{batch}], got {tuple(key_lengths.shape)}")
    if not key_lengths.is_cuda and key_lengths.numel() and (int(key_lengths.min()) < 0 or int(key_lengths.max()) > n_k):
        raise ValueError(f"key_lengths must lie in [0, {n_k}], got {key_lengths.tolist()}")
    return key_lengths


def lengths_to_mask(key_lengths: Tensor, n_k: int) -> Tensor:
    """Bool ``[batch, n_k]``: True for keys before each sequence's length."""
    return torch.arange(n_k, device=key_lengths.device).unsqueeze(0) < key_lengths.unsqueeze(1)


def check_alibi(alibi: Tensor | None, heads: int) -> Tensor | None:
    """ALiBi slopes: a ``[heads]`` tensor."""
    if alibi is None:
        return None
    check_tensor("alibi", alibi, 1)
    if alibi.shape[0] != heads:
        raise ValueError(f"alibi must hold one slope per head ({heads}), got shape {tuple(alibi.shape)}")
    return alibi


def padding_as_lengths(key_mask: Tensor | None, key_lengths: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """A key mask that is right padding (each row True then False) as key lengths, the form the fused
    kernels take; any other mask (left padding, holes) is returned as it is."""
    if key_mask is None or key_lengths is not None:
        return key_mask, key_lengths
    lengths = key_mask.sum(dim=1)
    if torch.equal(lengths_to_mask(lengths, key_mask.shape[1]), key_mask):
        return None, lengths
    return key_mask, None


def merge_padding(key_mask: Tensor | None, key_lengths: Tensor | None, n_k: int) -> Tensor | None:
    """One bool key mask from a mask and/or lengths."""
    if key_lengths is None:
        return key_mask
    from_lengths = lengths_to_mask(key_lengths, n_k)
    return from_lengths if key_mask is None else key_mask & from_lengths


def kernel_blocker(*, bias: Tensor | None, key_mask: Tensor | None, dropout_p: float = 0.0) -> str | None:
    """Why a call cannot run on the fused kernels (None when it can)."""
    if bias is not None:
        return "an arbitrary bias tensor (the kernels take ALiBi slopes as alibi=...)"
    if key_mask is not None:
        return "a boolean key_mask (the kernels take padding as key_lengths=...)"
    if dropout_p > 0:
        return "attention dropout"
    return None
