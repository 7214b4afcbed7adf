"""Lightning attention in Triton: decayed causal linear attention, forward and backward.

    o_t = Σ_{j≤t} λ^{t-j} (q_t·k_j) v_j,    λ_h = exp(-s_h)

One program walks the sequence of one (batch, head, slice of the value dim) in blocks of ``BLOCK``
tokens: inside a block a masked attention with decay ``M[t, s] = λ^{t-s}``, across blocks a ``d × e``
state carried in fp32. Every decay is ``λ`` raised to a non-negative power, so nothing overflows.

The backward is three more passes of the same kernel with the roles of the tensors exchanged:

    dQ_t = Σ_{j≤t} λ^{t-j} (dO_t·v_j) k_j    → kernel(q=dO, k=V, v=K)
    dK_j = Σ_{t≥j} λ^{t-j} (v_j·dO_t) q_t    → kernel(q=V, k=dO, v=Q), time reversed
    dV_j = Σ_{t≥j} λ^{t-j} (k_j·q_t) dO_t    → kernel(q=K, k=Q, v=dO), time reversed

Padding (per-sequence key lengths) zeroes the padded keys and values in the forward, which makes their
gradients zero in the backward.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import outputs_poisoned

DIMS = (16, 32, 64, 128)
CONFIGS = [
    triton.Config({"BLOCK": 64, "BLOCK_E": 64}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK": 64, "BLOCK_E": 32}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK": 32, "BLOCK_E": 32}, num_warps=2, num_stages=3),
    triton.Config({"BLOCK": 128, "BLOCK_E": 64}, num_warps=8, num_stages=2),
]


@triton.jit
def _lightning_kernel(
    Q, K, V, O, Lengths, Slopes,
    sqb, sqh, sqn, sqd, skb, skh, skn, skd, svb, svh, svn, sve, sob, soh, son, soe,
    H, N,
    QK_DIM: tl.constexpr, V_DIM: tl.constexpr, BLOCK: tl.constexpr, BLOCK_E: tl.constexpr,
    REVERSE: tl.constexpr, MASK_Q: tl.constexpr, MASK_KV: tl.constexpr, HAS_LENGTHS: tl.constexpr,
    IEEE: tl.constexpr,
):  # fmt: skip
    pid_bh = tl.program_id(0)
    pid_e = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    length = N
    if HAS_LENGTHS:
        length = tl.load(Lengths + b).to(tl.int32)
    rate = tl.load(Slopes + h).to(tl.float32)
    pos = tl.arange(0, BLOCK)
    t = pos.to(tl.float32)
    q_decay = tl.exp(-rate * (t + 1.0))  # λ^{t+1}: the carried state is as of the previous block's end
    k_decay = tl.exp(-rate * (BLOCK - 1.0 - t))  # λ^{BLOCK-1-s}: key s as seen from the block's end
    block_decay = tl.exp(-rate * BLOCK)
    gap = t[:, None] - t[None, :]
    intra = tl.where(gap >= 0, tl.exp(-rate * tl.maximum(gap, 0.0)), 0.0)
    offs_d = tl.arange(0, QK_DIM)
    offs_e = pid_e * BLOCK_E + tl.arange(0, BLOCK_E)
    e_mask = offs_e < V_DIM
    state = tl.zeros([QK_DIM, BLOCK_E], dtype=tl.float32)
    for start in range(0, N, BLOCK):
        p = start + pos
        idx = p
        if REVERSE:
            idx = N - 1 - p
        in_range = p < N
        real = in_range & (idx < length)
        q_mask = in_range
        if MASK_Q:
            q_mask = real
        kv_mask = in_range
        if MASK_KV:
            kv_mask = real
        q = tl.load(
            Q + b * sqb + h * sqh + idx[:, None] * sqn + offs_d[None, :] * sqd,
            mask=q_mask[:, None],
            other=0.0,
        )
        k = tl.load(
            K + b * skb + h * skh + idx[:, None] * skn + offs_d[None, :] * skd,
            mask=kv_mask[:, None],
            other=0.0,
        )
        v = tl.load(
            V + b * svb + h * svh + idx[:, None] * svn + offs_e[None, :] * sve,
            mask=kv_mask[:, None] & e_mask[None, :],
            other=0.0,
        )
        if IEEE:
            scores = tl.dot(q, tl.trans(k), input_precision="ieee") * intra
            out = tl.dot(scores, v, input_precision="ieee")
            out += tl.dot(q * q_decay[:, None], state, input_precision="ieee")
            state = state * block_decay + tl.dot(tl.trans(k * k_decay[:, None]), v, input_precision="ieee")
        else:
            scores = tl.dot(q, tl.trans(k)) * intra
            out = tl.dot(scores.to(v.dtype), v)
            out += tl.dot((q * q_decay[:, None]).to(tl.float32), state)
            state = state * block_decay + tl.dot(tl.trans((k * k_decay[:, None]).to(k.dtype)), v)
        tl.store(
            O + b * sob + h * soh + idx[:, None] * son + offs_e[None, :] * soe,
            out.to(O.dtype.element_ty),
            mask=in_range[:, None] & e_mask[None, :],
        )


_tuned = triton.autotune(CONFIGS, key=["N", "QK_DIM", "V_DIM", "REVERSE"])(_lightning_kernel)


def _pass(q, k, v, slopes, lengths, *, reverse: bool, mask_q: bool, mask_kv: bool, config=None) -> torch.Tensor:
    b, h, n, d = q.shape
    e = v.shape[-1]
    if outputs_poisoned():
        out = torch.full((b, h, n, e), float("nan"), device=q.device, dtype=q.dtype)
    else:
        out = torch.empty(b, h, n, e, device=q.device, dtype=q.dtype)
    dummy = torch.empty(1, device=q.device, dtype=torch.int32)
    meta = {
        "QK_DIM": d, "V_DIM": e, "REVERSE": reverse, "MASK_Q": mask_q, "MASK_KV": mask_kv,
        "HAS_LENGTHS": lengths is not None, "IEEE": q.dtype == torch.float32,
    }  # fmt: skip
    args = [q, k, v, out, lengths if lengths is not None else dummy, slopes]
    strides = [s for t in (q, k, v, out) for s in t.stride()]

    def grid(m):
        return (b * h, triton.cdiv(e, m["BLOCK_E"]))

    if config is None and not q.is_cuda:  # the interpreter cannot time configurations
        config = CONFIGS[0]
    if config is None:
        _tuned[grid](*args, *strides, h, n, **meta)
    else:
        _lightning_kernel[grid](*args, *strides, h, n, **meta, **config.kwargs, num_warps=config.num_warps,
                                num_stages=config.num_stages)  # fmt: skip
    return out


class LightningFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, slopes, lengths, config):
        ctx.save_for_backward(q, k, v, slopes, lengths)
        ctx.config = config
        return _pass(q, k, v, slopes, lengths, reverse=False, mask_q=False, mask_kv=True, config=config)

    @staticmethod
    def backward(ctx, do):
        q, k, v, slopes, lengths = ctx.saved_tensors
        do = do.contiguous()
        cfg = ctx.config
        dq = _pass(do, v, k, slopes, lengths, reverse=False, mask_q=False, mask_kv=True, config=cfg)
        dk = _pass(v, do, q, slopes, lengths, reverse=True, mask_q=True, mask_kv=False, config=cfg)
        dv = _pass(k, q, do, slopes, lengths, reverse=True, mask_q=True, mask_kv=False, config=cfg)
        return dq, dk, dv, None, None, None


def supported(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    return (
        q.ndim == 4 and q.shape == k.shape and v.shape[:3] == q.shape[:3]
        and q.shape[-1] in DIMS and v.shape[-1] in DIMS
        and q.dtype == k.dtype == v.dtype and q.dtype in (torch.float16, torch.bfloat16, torch.float32)
    )  # fmt: skip


def lightning_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    slopes: torch.Tensor,
    *,
    key_lengths: torch.Tensor | None = None,
    config: triton.Config | None = None,
) -> torch.Tensor:
    """Causal decayed linear attention over ``[b, h, n, d]`` (values ``[b, h, n, e]``) with Triton."""
    if not supported(q, k, v):
        raise ValueError(
            f"unsupported shapes/dtypes for the Triton lightning attention: q {tuple(q.shape)} {q.dtype}, "
            f"v {tuple(v.shape)}; head dims must be in {DIMS}"
        )
    slopes = slopes.to(device=q.device, dtype=torch.float32).contiguous()
    if key_lengths is not None:
        key_lengths = key_lengths.to(device=q.device, dtype=torch.int32).contiguous()
    return LightningFunction.apply(q, k, v, slopes, key_lengths, config)
