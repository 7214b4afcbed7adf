"""Decayed linear attention with Lightning Attention's semantics (Qin et al., 2024).

Causal form, per head ``h`` with decay ``λ_h = exp(-s_h)`` (``s_h`` the ALiBi slopes by default):

    o_t = Σ_{j≤t} λ^{t-j} (q_t·k_j) v_j

No softmax, no ``1/√d`` scale and no normalisation (the surrounding model normalises, as in
TransNormerLLM). Three forms compute the same outputs:

* **chunked parallel** (:func:`lightning_attention`): the sequence is cut into blocks of ``C`` tokens;
  inside a block a masked attention with decay mask ``M[t, s] = λ^{t-s}`` (``t ≥ s``), across blocks a
  ``d × e`` state ``S`` carried in fp32::

      O_block = [(Q Kᵀ) ⊙ M] V + (Q ⊙ λ^{t+1}) S
      S      ← λ^C S + (K ⊙ λ^{C-1-s})ᵀ V

  Every exponent is ≥ 0 on ``λ ≤ 1``: ``λ^{-t}`` is never formed, so nothing overflows at any length.
* **recurrent** (:func:`lightning_step`, :func:`lightning_attention_recurrent`): ``S_t = λ S_{t-1} +
  k_t v_tᵀ``, ``o_t = q_t S_t``: O(1) state per head for streaming decoding.
* **non-causal** (``causal=False``): ``o_t = Σ_j λ^{|t-j|} (q_t·k_j) v_j``, computed as a forward pass
  plus a backward pass minus the doubly counted diagonal; with zero slopes it is ``Q (Kᵀ V)``.

Padding keys (``key_mask`` False) are zeroed, which removes them exactly from every form.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._backend import use_triton
from ._checks import check_key_lengths, check_key_mask, check_qkv, check_tensor, merge_padding
from .multihead import MultiHeadAttention
from .positional import alibi_slopes


def _check_slopes(slopes: Tensor | None, heads: int, device: torch.device) -> Tensor:
    if slopes is None:
        return alibi_slopes(heads).to(device)
    check_tensor("slopes", slopes, 1)
    if slopes.shape[0] != heads:
        raise ValueError(f"slopes must have one value per head ({heads}), got shape {tuple(slopes.shape)}")
    if not bool(torch.isfinite(slopes).all()) or bool((slopes < 0).any()):
        raise ValueError("slopes must be finite and >= 0 (decay λ = exp(-slope) must lie in (0, 1])")
    return slopes.to(device)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _mask_keys(k: Tensor, v: Tensor, key_mask: Tensor | None) -> tuple[Tensor, Tensor]:
    if key_mask is None:
        return k, v
    keep = key_mask.view(key_mask.shape[0], 1, -1, 1).to(k.dtype)
    return k * keep, v * keep


def lightning_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    slopes: Tensor | None = None,
    *,
    causal: bool = True,
    key_mask: Tensor | None = None,
    key_lengths: Tensor | None = None,
    block_size: int = 64,
    initial_state: Tensor | None = None,
    return_state: bool = False,
    backend: str | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Chunked decayed linear attention over ``[batch, heads, seq, head_dim]`` tensors (self attention).

    Args:
        q, k: ``[b, h, n, d]``; v: ``[b, h, n, e]``.
        slopes: ``[h]`` decay rates ``s_h >= 0`` (``λ_h = exp(-s_h)``); ALiBi slopes when None.
        causal: causal form (default) or the symmetric non-causal form.
        key_mask: bool ``[b, n]``, True for real tokens.
        key_lengths: int ``[b]``; tokens at or beyond a sequence's length are padding.
        block_size: chunk length ``C`` of the PyTorch path.
        initial_state: ``[b, h, d, e]`` state from an earlier segment (causal only).
        return_state: also return the state after the last token (causal only), to continue decoding
            with :func:`lightning_step`.
        backend: ``"auto"``, ``"torch"`` or ``"triton"``; on CUDA the Triton kernel runs causal calls
            without states or a boolean mask (see ``shared_attention._backend``).
    Returns:
        ``[b, h, n, e]`` outputs, and the ``[b, h, d, e]`` fp32 state when ``return_state``.
    """
    b, h, n, _, e = check_qkv(q, k, v, same_length=True)
    key_mask = check_key_mask(key_mask, b, n)
    key_lengths = check_key_lengths(key_lengths, b, n)
    slopes = _check_slopes(slopes, h, q.device)
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    blocker = None
    if not causal or initial_state is not None or return_state:
        blocker = "the non-causal form and carried states (the kernel is the causal forward/backward)"
    elif key_mask is not None:
        blocker = "a boolean key_mask (the kernel takes padding as key_lengths=...)"
    kernel = use_triton(backend, "lightning", q, k, v, blocker)
    if kernel is not None:
        return kernel.lightning_attention(q, k, v, slopes, key_lengths=key_lengths)
    key_mask = merge_padding(key_mask, key_lengths, n)
    if not causal:
        if initial_state is not None or return_state:
            raise ValueError("initial_state and return_state need causal=True")
        return _noncausal(q, k, v, slopes, key_mask, block_size)
    if initial_state is not None:
        check_tensor("initial_state", initial_state, 4)
        if tuple(initial_state.shape) != (b, h, q.shape[-1], e):
            raise ValueError(
                f"initial_state must have shape {(b, h, q.shape[-1], e)}, got {tuple(initial_state.shape)}"
            )
    k, v = _mask_keys(k, v, key_mask)
    out, state = _chunked_causal(q, k, v, slopes, block_size, initial_state, return_state)
    return (out, state) if return_state else out


def _chunked_causal(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    slopes: Tensor,
    block: int,
    initial_state: Tensor | None,
    want_state: bool,
) -> tuple[Tensor, Tensor | None]:
    b, h, n, d = q.shape
    e = v.shape[-1]
    dtype = _compute_dtype(q.dtype)
    block = min(block, n)
    num_blocks = -(-n // block)
    pad = num_blocks * block - n

    def blocks(x: Tensor) -> Tensor:
        x = x.to(dtype)
        if pad:
            x = torch.nn.functional.pad(x, (0, 0, 0, pad))
        return x.view(b, h, num_blocks, block, x.shape[-1])

    qb, kb, vb = blocks(q), blocks(k), blocks(v)
    rate = slopes.to(dtype).view(h, 1)  # s_h
    pos = torch.arange(block, device=q.device, dtype=dtype)
    gap = pos.view(-1, 1) - pos.view(1, -1)  # t - s
    intra_decay = torch.where(gap >= 0, torch.exp(-rate.view(h, 1, 1) * gap.clamp_min(0)), 0.0)
    q_decay = torch.exp(-rate * (pos + 1))  # λ^{t+1}, [h, C]
    k_decay = torch.exp(-rate * (block - 1 - pos))  # λ^{C-1-s}, [h, C]
    block_decay = torch.exp(-rate * block).view(1, h, 1, 1)  # λ^C

    scores = torch.matmul(qb, kb.transpose(-1, -2)) * intra_decay.view(1, h, 1, block, block)
    out = torch.matmul(scores, vb)  # intra-block part, [b, h, NB, C, e]
    block_kv = torch.matmul((kb * k_decay.view(1, h, 1, block, 1)).transpose(-1, -2), vb)  # [b,h,NB,d,e]

    state = torch.zeros(b, h, d, e, device=q.device, dtype=dtype) if initial_state is None else initial_state.to(dtype)
    states_before = []
    for i in range(num_blocks):
        states_before.append(state)
        if i < num_blocks - 1:
            state = block_decay * state + block_kv[:, :, i]
    states = torch.stack(states_before, dim=2)  # [b, h, NB, d, e]
    out = out + torch.matmul(qb * q_decay.view(1, h, 1, block, 1), states)

    final_state = None
    if want_state:
        # The last block holds r real tokens: decay the carried state by λ^r and weight its keys by
        # λ^{r-1-s} (s < r); padded slots have zero keys, so clamping their exponent at 0 is exact.
        r = n - (num_blocks - 1) * block
        last_k = kb[:, :, -1] * torch.exp(-rate * (r - 1 - pos).clamp_min(0)).view(1, h, block, 1)
        final_state = torch.exp(-rate * r).view(1, h, 1, 1) * state + torch.matmul(
            last_k.transpose(-1, -2), vb[:, :, -1]
        )
    out = out.reshape(b, h, num_blocks * block, e)[:, :, :n]
    return out.to(v.dtype), final_state


def _noncausal(q: Tensor, k: Tensor, v: Tensor, slopes: Tensor, key_mask: Tensor | None, block: int) -> Tensor:
    k, v = _mask_keys(k, v, key_mask)
    forward, _ = _chunked_causal(q, k, v, slopes, block, None, False)
    backward, _ = _chunked_causal(q.flip(2), k.flip(2), v.flip(2), slopes, block, None, False)
    dtype = _compute_dtype(q.dtype)
    diagonal = (q.to(dtype) * k.to(dtype)).sum(-1, keepdim=True) * v.to(dtype)
    return (forward.to(dtype) + backward.flip(2).to(dtype) - diagonal).to(v.dtype)


def lightning_step(
    q_t: Tensor, k_t: Tensor, v_t: Tensor, state: Tensor | None, slopes: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """One decoding step: ``S ← λ S + k_t v_tᵀ``, ``o_t = q_t S``.

    Args:
        q_t, k_t: ``[b, h, d]``; v_t: ``[b, h, e]``; state: ``[b, h, d, e]`` or None (zeros).
    Returns:
        ``(o_t [b, h, e], new state [b, h, d, e] in fp32)``.
    """
    for name, t in (("q_t", q_t), ("k_t", k_t), ("v_t", v_t)):
        check_tensor(name, t, 3)
    b, h, d = q_t.shape
    e = v_t.shape[-1]
    if tuple(k_t.shape) != (b, h, d) or v_t.shape[:2] != (b, h):
        raise ValueError(f"k_t must be {(b, h, d)} and v_t [b, h, e]; got {tuple(k_t.shape)}, {tuple(v_t.shape)}")
    slopes = _check_slopes(slopes, h, q_t.device)
    dtype = _compute_dtype(q_t.dtype)
    if state is None:
        state = torch.zeros(b, h, d, e, device=q_t.device, dtype=dtype)
    elif tuple(state.shape) != (b, h, d, e):
        raise ValueError(f"state must have shape {(b, h, d, e)}, got {tuple(state.shape)}")
    decay = torch.exp(-slopes.to(dtype)).view(1, h, 1, 1)
    state = decay * state.to(dtype) + k_t.to(dtype).unsqueeze(-1) * v_t.to(dtype).unsqueeze(-2)
    out = torch.einsum("bhd,bhde->bhe", q_t.to(dtype), state)
    return out.to(v_t.dtype), state


def lightning_attention_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    slopes: Tensor | None = None,
    *,
    key_mask: Tensor | None = None,
    initial_state: Tensor | None = None,
    return_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """The causal form token by token with :func:`lightning_step` (O(1) state; for decoding/tests)."""
    b, _, n, _, _ = check_qkv(q, k, v, same_length=True)
    key_mask = check_key_mask(key_mask, b, n)
    k, v = _mask_keys(k, v, key_mask)
    state = initial_state
    outs = []
    for t in range(n):
        o_t, state = lightning_step(q[:, :, t], k[:, :, t], v[:, :, t], state, slopes)
        outs.append(o_t)
    out = torch.stack(outs, dim=2)
    return (out, state) if return_state else out


class LightningAttention(MultiHeadAttention):
    """Multi-head decayed linear attention layer (self attention only; the decay is its position term).

    Args:
        block_size: chunk length of the parallel form.
        slopes: per-head decay rates (ALiBi slopes when None); a fixed buffer, not trained.
        other arguments as in :class:`MultiHeadAttention` (``positional`` may be ``"rope"`` or None).
    """

    mechanism = "lightning"
    supports_bias = False
    supports_cross = False

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        block_size: int = 64,
        slopes: Tensor | None = None,
        causal: bool = True,
        **kwargs,
    ):
        super().__init__(dim, num_heads, causal=causal, **kwargs)
        self.block_size = block_size
        slopes = alibi_slopes(num_heads) if slopes is None else _check_slopes(slopes, num_heads, "cpu")
        self.register_buffer("slopes", slopes.float())

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        key_mask: Tensor | None,
        bias: Tensor | None,
        alibi: Tensor | None,
    ) -> Tensor:
        return lightning_attention(
            q, k, v, self.slopes, causal=self.causal, key_mask=key_mask, block_size=self.block_size
        )

    def step(self, x_t: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Streaming decoding: ``x_t [b, dim]`` → ``(y_t [b, dim], state)`` with an O(1) state.

        Only for causal layers without RoPE-dependent positions (the decay carries position).
        """
        if not self.causal or self.rope is not None:
            raise ValueError("step() needs a causal layer without RoPE")
        check_tensor("x_t", x_t, 2)
        b = x_t.shape[0]
        q = self.q_proj(x_t).view(b, self.num_heads, -1)
        k = self.k_proj(x_t).view(b, self.num_heads, -1)
        v = self.v_proj(x_t).view(b, self.num_heads, -1)
        out, state = lightning_step(q, k, v, state, self.slopes)
        return self.out_proj(out.reshape(b, -1)), state
