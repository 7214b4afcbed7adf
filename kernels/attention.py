"""Fused attention in Triton, forward and backward, with the score function chosen at compile time.

* softmax: ``O = softmax(Q Kᵀ s + A) V`` with the online row max and sum (FlashAttention-2); the
  forward stores the log-sum-exp per row, the backward recomputes the probabilities from it and
  uses ``Δ = rowsum(dO ⊙ O)``.
* sigmoid: ``O = σ(Q Kᵀ s + A + b) V`` (FlashSigmoid's form, ``b = -log n`` by default with ``n`` the
  real keys of the sequence): no row statistics, so no rescaling in the forward and neither
  log-sum-exp nor ``Δ`` in the backward (``dS = P(1 - P) ⊙ dP``).

``A`` is an optional ALiBi term per head, ``-m_h (i' - j)`` causal or ``-m_h |i' - j|`` otherwise, with
``i' = i + n_k - n_q`` (queries aligned with the end of the keys, as in the core). Causal kernels stop
at the diagonal instead of masking whole blocks; padding is given as per-sequence key lengths. Inputs
in fp16, bf16 or fp32, accumulation in fp32; head dims 16–128. Rows that see no key output zeros.

Every launch either names one of :data:`CONFIGS` (tests run them all) or lets Triton's autotuner pick
on the GPU. Under ``TRITON_INTERPRET=1`` the same kernels run on the CPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import outputs_poisoned

SOFTMAX, SIGMOID = 0, 1
SCORES = {"softmax": SOFTMAX, "sigmoid": SIGMOID}
HEAD_DIMS = (16, 32, 64, 128)

CONFIGS = [
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 64}, num_warps=8, num_stages=3),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128}, num_warps=8, num_stages=2),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 32}, num_warps=4, num_stages=4),
]
BWD_CONFIGS = [
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 64}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 64}, num_warps=4, num_stages=3),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128}, num_warps=8, num_stages=2),
]


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    """fp32 inputs use exact fp32 products (IEEE) so GPU results match the interpreter's."""
    if IEEE:
        return tl.dot(a, b, input_precision="ieee")
    return tl.dot(a, b)


@triton.jit
def _scores(
    q,
    kt,
    offs_m,
    offs_n,
    offset,
    kv_len,
    n_q,
    sm_scale,
    slope,
    sig_bias,
    SCORE: tl.constexpr,
    CAUSAL: tl.constexpr,
    HAS_ALIBI: tl.constexpr,
    IEEE: tl.constexpr,
):
    """Score block ``[BLOCK_M, BLOCK_N]`` (pre-activation, fp32) and its validity mask."""
    s = _dot(q, kt, IEEE) * sm_scale
    dist = (offs_m[:, None] + offset) - offs_n[None, :]
    if HAS_ALIBI:
        if CAUSAL:
            s = s - slope * dist.to(tl.float32)
        else:
            s = s - slope * tl.abs(dist).to(tl.float32)
    valid = (offs_n[None, :] < kv_len) & (offs_m[:, None] < n_q)
    if CAUSAL:
        valid = valid & (dist >= 0)
    if SCORE == 1:
        s = s + sig_bias
    return s, valid


@triton.jit
def _seq_setup(
    Lengths,
    Slopes,
    b,
    h,
    N_K,
    sig_bias,
    HAS_LENGTHS: tl.constexpr,
    HAS_ALIBI: tl.constexpr,
    SIG_LOG_LEN: tl.constexpr,
):
    kv_len = N_K
    if HAS_LENGTHS:
        kv_len = tl.load(Lengths + b).to(tl.int32)
    slope = 0.0
    if HAS_ALIBI:
        slope = tl.load(Slopes + h).to(tl.float32)
    bias = sig_bias
    if SIG_LOG_LEN:
        bias = -tl.log(tl.maximum(kv_len, 1).to(tl.float32))
    return kv_len, slope, bias


@triton.jit
def _fwd_kernel(
    Q, K, V, O, LSE, Lengths, Slopes,
    sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd, sob, soh, som, sod,
    H, N_Q, N_K, sm_scale, sig_bias,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SCORE: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_ALIBI: tl.constexpr, SIG_LOG_LEN: tl.constexpr,
    IEEE: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    kv_len, slope, bias = _seq_setup(Lengths, Slopes, b, h, N_K, sig_bias, HAS_LENGTHS, HAS_ALIBI, SIG_LOG_LEN)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(
        Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd,
        mask=offs_m[:, None] < N_Q,
        other=0.0,
    )
    offset = N_K - N_Q
    hi = kv_len
    if CAUSAL:  # the block's last row sees keys up to (its index + offset): stop there
        hi = tl.minimum(hi, (pid_m + 1) * BLOCK_M + offset)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kv_mask = offs_n < kv_len
        kt = tl.load(
            K + b * skb + h * skh + offs_n[None, :] * skn + offs_d[:, None] * skd,
            mask=kv_mask[None, :],
            other=0.0,
        )
        v = tl.load(
            V + b * svb + h * svh + offs_n[:, None] * svn + offs_d[None, :] * svd,
            mask=kv_mask[:, None],
            other=0.0,
        )
        s, valid = _scores(
            q, kt, offs_m, offs_n, offset, kv_len, N_Q, sm_scale, slope, bias, SCORE, CAUSAL, HAS_ALIBI, IEEE
        )
        if SCORE == 0:
            s = tl.where(valid, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with no key yet stay at 0
            p = tl.exp(s - m_safe[:, None])
            alpha = tl.exp(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, IEEE)
            m_i = m_new
        else:
            p = tl.where(valid, tl.sigmoid(s), 0.0)
            acc += _dot(p.to(v.dtype), v, IEEE)
    if SCORE == 0:
        has_key = l_i > 0
        acc = acc / tl.where(has_key, l_i, 1.0)[:, None]
        lse = tl.where(has_key, m_i + tl.log(tl.where(has_key, l_i, 1.0)), float("inf"))
        tl.store(LSE + pid_bh * N_Q + offs_m, lse, mask=offs_m < N_Q)
    tl.store(
        O + b * sob + h * soh + offs_m[:, None] * som + offs_d[None, :] * sod,
        acc.to(O.dtype.element_ty),
        mask=offs_m[:, None] < N_Q,
    )


@triton.jit
def _bwd_dkdv_kernel(
    Q, K, V, DO, DK, DV, LSE, DELTA, Lengths, Slopes,
    sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd, sdb, sdh, sdm, sdd,
    H, N_Q, N_K, sm_scale, sig_bias,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SCORE: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_ALIBI: tl.constexpr, SIG_LOG_LEN: tl.constexpr,
    IEEE: tl.constexpr,
):  # fmt: skip
    """One block of keys: accumulate dK and dV over the query blocks that see it.

    Works on transposed score tiles ``[BLOCK_N, BLOCK_M]`` computed as ``K Qᵀ`` directly, so no dot
    accumulator is ever transposed before feeding another dot (a pattern Triton 3.4-3.7.0 miscompiles
    on Hopper, fla issue #640)."""
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    kv_len, slope, bias = _seq_setup(Lengths, Slopes, b, h, N_K, sig_bias, HAS_LENGTHS, HAS_ALIBI, SIG_LOG_LEN)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_mask = offs_n < kv_len
    k = tl.load(
        K + b * skb + h * skh + offs_n[:, None] * skn + offs_d[None, :] * skd,
        mask=kv_mask[:, None],
        other=0.0,
    )
    v = tl.load(
        V + b * svb + h * svh + offs_n[:, None] * svn + offs_d[None, :] * svd,
        mask=kv_mask[:, None],
        other=0.0,
    )
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    offset = N_K - N_Q
    lo = 0
    if CAUSAL:  # queries before (first key - offset) never see this block
        lo = tl.maximum(pid_n * BLOCK_N - offset, 0) // BLOCK_M * BLOCK_M
    hi = N_Q
    if pid_n * BLOCK_N >= kv_len:  # padding only: gradients are zero
        hi = 0
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        row_mask = offs_m < N_Q
        q = tl.load(
            Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd,
            mask=row_mask[:, None],
            other=0.0,
        )
        do = tl.load(
            DO + b * sdb + h * sdh + offs_m[:, None] * sdm + offs_d[None, :] * sdd,
            mask=row_mask[:, None],
            other=0.0,
        )
        st = _dot(k, tl.trans(q), IEEE) * sm_scale  # [BLOCK_N, BLOCK_M]
        dist = (offs_m[None, :] + offset) - offs_n[:, None]
        if HAS_ALIBI:
            if CAUSAL:
                st = st - slope * dist.to(tl.float32)
            else:
                st = st - slope * tl.abs(dist).to(tl.float32)
        valid = kv_mask[:, None] & row_mask[None, :]
        if CAUSAL:
            valid = valid & (dist >= 0)
        dpt = _dot(v, tl.trans(do), IEEE)  # [BLOCK_N, BLOCK_M]
        if SCORE == 0:
            lse = tl.load(LSE + pid_bh * N_Q + offs_m, mask=row_mask, other=float("inf"))
            pt = tl.where(valid, tl.exp(st - lse[None, :]), 0.0)
            delta = tl.load(DELTA + pid_bh * N_Q + offs_m, mask=row_mask, other=0.0)
            dst = pt * (dpt - delta[None, :])
        else:
            pt = tl.where(valid, tl.sigmoid(st + bias), 0.0)
            dst = pt * (1.0 - pt) * dpt
        dv += _dot(pt.to(do.dtype), do, IEEE)
        dk += _dot(dst.to(q.dtype), q, IEEE)
    dk = dk * sm_scale
    out_mask = offs_n[:, None] < N_K
    tl.store(
        DK + b * skb + h * skh + offs_n[:, None] * skn + offs_d[None, :] * skd,
        dk.to(DK.dtype.element_ty),
        mask=out_mask,
    )
    tl.store(
        DV + b * svb + h * svh + offs_n[:, None] * svn + offs_d[None, :] * svd,
        dv.to(DV.dtype.element_ty),
        mask=out_mask,
    )


@triton.jit
def _bwd_dq_kernel(
    Q, K, V, DO, DQ, LSE, DELTA, Lengths, Slopes,
    sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd, sdb, sdh, sdm, sdd,
    H, N_Q, N_K, sm_scale, sig_bias,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SCORE: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_LENGTHS: tl.constexpr, HAS_ALIBI: tl.constexpr, SIG_LOG_LEN: tl.constexpr,
    IEEE: tl.constexpr,
):  # fmt: skip
    """One block of queries: accumulate dQ over the key blocks it sees."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    kv_len, slope, bias = _seq_setup(Lengths, Slopes, b, h, N_K, sig_bias, HAS_LENGTHS, HAS_ALIBI, SIG_LOG_LEN)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_mask = offs_m < N_Q
    q = tl.load(
        Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd,
        mask=row_mask[:, None],
        other=0.0,
    )
    do = tl.load(
        DO + b * sdb + h * sdh + offs_m[:, None] * sdm + offs_d[None, :] * sdd,
        mask=row_mask[:, None],
        other=0.0,
    )
    lse = tl.load(LSE + pid_bh * N_Q + offs_m, mask=row_mask, other=float("inf"))
    delta = tl.load(DELTA + pid_bh * N_Q + offs_m, mask=row_mask, other=0.0)
    offset = N_K - N_Q
    hi = kv_len
    if CAUSAL:
        hi = tl.minimum(hi, (pid_m + 1) * BLOCK_M + offset)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kv_mask = offs_n < kv_len
        kt = tl.load(
            K + b * skb + h * skh + offs_n[None, :] * skn + offs_d[:, None] * skd,
            mask=kv_mask[None, :],
            other=0.0,
        )
        vt = tl.load(
            V + b * svb + h * svh + offs_n[None, :] * svn + offs_d[:, None] * svd,
            mask=kv_mask[None, :],
            other=0.0,
        )
        s, valid = _scores(
            q, kt, offs_m, offs_n, offset, kv_len, N_Q, sm_scale, slope, bias, SCORE, CAUSAL, HAS_ALIBI, IEEE
        )
        dp = _dot(do, vt, IEEE)
        if SCORE == 0:
            p = tl.where(valid, tl.exp(s - lse[:, None]), 0.0)
            ds = p * (dp - delta[:, None])
        else:
            p = tl.where(valid, tl.sigmoid(s), 0.0)
            ds = p * (1.0 - p) * dp
        dq += _dot(ds.to(kt.dtype), tl.trans(kt), IEEE)
    dq = dq * sm_scale
    tl.store(
        DQ + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd,
        dq.to(DQ.dtype.element_ty),
        mask=row_mask[:, None],
    )


_fwd_tuned = triton.autotune(CONFIGS, key=["N_Q", "N_K", "HEAD_DIM", "SCORE", "CAUSAL"])(_fwd_kernel)
_dkdv_tuned = triton.autotune(BWD_CONFIGS, key=["N_Q", "N_K", "HEAD_DIM", "SCORE", "CAUSAL"])(_bwd_dkdv_kernel)
_dq_tuned = triton.autotune(BWD_CONFIGS, key=["N_Q", "N_K", "HEAD_DIM", "SCORE", "CAUSAL"])(_bwd_dq_kernel)


def _strides(*tensors: torch.Tensor) -> list[int]:
    return [s for t in tensors for s in t.stride()]


def _launch(kernel, tuned, grid, config: triton.Config | None, *args, **meta) -> None:
    """Run ``kernel`` with ``config``, or autotuned on a GPU; the interpreter (CPU tensors) cannot time
    configurations, so it takes the first one."""
    if config is None and not args[0].is_cuda:
        config = tuned.configs[0]
    if config is None:
        tuned[grid](*args, **meta)
    else:
        kernel[grid](*args, **meta, **config.kwargs, num_warps=config.num_warps, num_stages=config.num_stages)


class _Setup:
    """Arguments shared by the three kernels of one call."""

    def __init__(self, q, k, score, causal, key_lengths, alibi_slopes, scale, sigmoid_bias):
        self.b, self.h, self.n_q, self.d = q.shape
        self.n_k = k.shape[2]
        self.score = SCORES[score]
        self.causal = causal
        self.lengths = key_lengths
        self.slopes = alibi_slopes
        self.scale = float(scale) if scale is not None else self.d**-0.5
        self.fixed_bias = sigmoid_bias is not None
        self.sig_bias = float(sigmoid_bias) if sigmoid_bias is not None else 0.0
        self.dummy = torch.empty(1, device=q.device, dtype=torch.float32)

    def tail(self, ieee: bool) -> tuple[list, dict]:
        args = [self.h, self.n_q, self.n_k, self.scale, self.sig_bias]
        meta = {
            "HEAD_DIM": self.d, "SCORE": self.score, "CAUSAL": self.causal,
            "HAS_LENGTHS": self.lengths is not None, "HAS_ALIBI": self.slopes is not None,
            "SIG_LOG_LEN": self.score == SIGMOID and not self.fixed_bias, "IEEE": ieee,
        }  # fmt: skip
        return args, meta

    @property
    def ptrs(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            self.lengths if self.lengths is not None else self.dummy,
            self.slopes if self.slopes is not None else self.dummy,
        )


def _new(shape_like: torch.Tensor, *, shape=None, dtype=None) -> torch.Tensor:
    shape = shape_like.shape if shape is None else shape
    dtype = shape_like.dtype if dtype is None else dtype
    if outputs_poisoned():
        return torch.full(shape, float("nan"), device=shape_like.device, dtype=dtype)
    return torch.empty(shape, device=shape_like.device, dtype=dtype)


def attention_forward(q, k, v, setup: _Setup, config=None) -> tuple[torch.Tensor, torch.Tensor]:
    o = _new(q)
    lse = _new(q, shape=(setup.b * setup.h * setup.n_q,), dtype=torch.float32)
    args, meta = setup.tail(q.dtype == torch.float32)
    lengths, slopes = setup.ptrs

    def grid(m):
        return (triton.cdiv(setup.n_q, m["BLOCK_M"]), setup.b * setup.h)

    _launch(_fwd_kernel, _fwd_tuned, grid, config, q, k, v, o, lse, lengths, slopes,
            *_strides(q, k, v, o), *args, **meta)  # fmt: skip
    return o, lse


def attention_backward(q, k, v, o, lse, do, setup: _Setup, config=None):
    do = do.contiguous()
    # Δ = rowsum(dO ⊙ O) for softmax; sigmoid needs no row statistics (the pointer is not read)
    delta = (do.float() * o.float()).sum(-1).reshape(-1) if setup.score == SOFTMAX else setup.dummy
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    dq, dk, dv = _new(q), _new(k), _new(v)  # contiguous like q, k, v: the kernels reuse their strides
    args, meta = setup.tail(q.dtype == torch.float32)
    lengths, slopes = setup.ptrs

    def grid_kv(m):
        return (triton.cdiv(setup.n_k, m["BLOCK_N"]), setup.b * setup.h)

    def grid_q(m):
        return (triton.cdiv(setup.n_q, m["BLOCK_M"]), setup.b * setup.h)

    _launch(_bwd_dkdv_kernel, _dkdv_tuned, grid_kv, config, q, k, v, do, dk, dv, lse, delta, lengths, slopes,
            *_strides(q, k, v, do), *args, **meta)  # fmt: skip
    _launch(_bwd_dq_kernel, _dq_tuned, grid_q, config, q, k, v, do, dq, lse, delta, lengths, slopes,
            *_strides(q, k, v, do), *args, **meta)  # fmt: skip
    return dq, dk, dv


class FusedAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, score, causal, key_lengths, alibi_slopes, scale, sigmoid_bias, fwd_config, bwd_config):
        setup = _Setup(q, k, score, causal, key_lengths, alibi_slopes, scale, sigmoid_bias)
        o, lse = attention_forward(q, k, v, setup, fwd_config)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.setup, ctx.bwd_config = setup, bwd_config
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = attention_backward(q, k, v, o, lse, do, ctx.setup, ctx.bwd_config)
        return dq, dk, dv, None, None, None, None, None, None, None, None


def supported(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Shapes and dtypes these kernels take: [b, h, n, d] with equal head dims in :data:`HEAD_DIMS`."""
    return (
        q.ndim == 4 and k.ndim == 4 and v.ndim == 4
        and q.shape[-1] == k.shape[-1] == v.shape[-1] and q.shape[-1] in HEAD_DIMS
        and q.dtype == k.dtype == v.dtype and q.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and q.device == k.device == v.device
    )  # fmt: skip


def fused_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    score: str = "softmax",
    causal: bool = False,
    key_lengths: torch.Tensor | None = None,
    alibi_slopes: torch.Tensor | None = None,
    scale: float | None = None,
    sigmoid_bias: float | None = None,
    fwd_config: triton.Config | None = None,
    bwd_config: triton.Config | None = None,
) -> torch.Tensor:
    """Softmax or sigmoid attention over ``[b, h, n, d]`` tensors with the Triton kernels.

    ``key_lengths`` (int ``[b]``) marks keys at or beyond each length as padding; ``alibi_slopes``
    (``[h]``) adds the ALiBi term; ``sigmoid_bias`` fixes ``b`` (default ``-log`` of each sequence's
    key length). ``fwd_config``/``bwd_config`` pin a configuration instead of autotuning.
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {sorted(SCORES)}, got {score!r}")
    if not supported(q, k, v):
        raise ValueError(
            f"unsupported shapes/dtypes for the Triton attention: q {tuple(q.shape)} {q.dtype}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}; head_dim must be one of {HEAD_DIMS}"
        )
    if key_lengths is not None:
        key_lengths = key_lengths.to(device=q.device, dtype=torch.int32).contiguous()
    if alibi_slopes is not None:
        alibi_slopes = alibi_slopes.to(device=q.device, dtype=torch.float32).contiguous()
    return FusedAttention.apply(
        q, k, v, score, causal, key_lengths, alibi_slopes, scale, sigmoid_bias, fwd_config, bwd_config
    )
