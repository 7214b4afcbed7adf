"""The core chooses kernels or PyTorch by backend: forcing either gives the same results, unsupported
calls are refused when forced and fall back in auto mode, and CPU tensors stay on PyTorch in auto."""

from __future__ import annotations

import pytest
import torch

import shared_attention as sa
from shared_attention import _backend

from ..shared_attention.reference import max_rel_err


def _qkv(n=40, d=32):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(2, 4, n, d, generator=g) for _ in range(3))


@pytest.mark.parametrize("fn", [sa.softmax_attention, sa.sigmoid_attention])
@pytest.mark.parametrize("causal", [False, True])
def test_forced_triton_equals_forced_torch(fn, causal):
    q, k, v = _qkv()
    kwargs = {"causal": causal, "key_lengths": torch.tensor([40, 33]), "alibi": sa.alibi_slopes(4)}
    assert max_rel_err(fn(q, k, v, backend="triton", **kwargs), fn(q, k, v, backend="torch", **kwargs)) < 1e-5


def test_lightning_forced_triton_equals_torch():
    q, k, v = _qkv(d=16)
    lengths = torch.tensor([40, 25])
    a = sa.lightning_attention(q, k, v, key_lengths=lengths, backend="triton")
    b = sa.lightning_attention(q, k, v, key_lengths=lengths, backend="torch")
    assert max_rel_err(a, b) < 1e-5


@pytest.mark.parametrize("fn", [sa.softmax_attention, sa.sigmoid_attention])
def test_right_padding_masks_reach_the_kernels_as_lengths(fn):
    q, k, v = _qkv()
    right_padding = torch.arange(40).unsqueeze(0) < torch.tensor([[40], [29]])
    fused = fn(q, k, v, key_mask=right_padding, backend="triton")
    assert max_rel_err(fused, fn(q, k, v, key_mask=right_padding, backend="torch")) < 1e-5


def test_environment_variable_selects_the_backend(monkeypatch):
    q, k, v = _qkv()
    calls = []
    module = _backend.kernels("attention")
    original = module.fused_attention
    monkeypatch.setattr(module, "fused_attention", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    monkeypatch.setenv("ATTENTION_BACKEND", "triton")
    sa.softmax_attention(q, k, v)
    assert calls == [1]
    monkeypatch.setenv("ATTENTION_BACKEND", "torch")
    sa.softmax_attention(q, k, v)
    monkeypatch.setenv("ATTENTION_BACKEND", "auto")
    sa.softmax_attention(q, k, v)  # CPU tensors: PyTorch in auto mode
    assert calls == [1]
    monkeypatch.setenv("ATTENTION_BACKEND", "fast")
    with pytest.raises(ValueError, match="backend must be one of"):
        sa.softmax_attention(q, k, v)


def test_forced_triton_refuses_what_the_kernels_cannot_do():
    q, k, v = _qkv()
    left_padding = torch.arange(40).unsqueeze(0) >= torch.tensor([[0], [7]])  # not expressible as lengths
    with pytest.raises(ValueError, match="boolean key_mask"):
        sa.softmax_attention(q, k, v, key_mask=left_padding, backend="triton")
    with pytest.raises(ValueError, match="arbitrary bias"):
        sa.sigmoid_attention(q, k, v, bias=torch.zeros(1, 4, 40, 40), backend="triton")
    with pytest.raises(ValueError, match="outside the kernels' range"):
        q2, k2, v2 = (t[..., :24] for t in (q, k, v))
        sa.softmax_attention(q2, k2, v2, backend="triton")
    with pytest.raises(ValueError, match="carried states"):
        sa.lightning_attention(q, k, v, backend="triton", return_state=True)


def test_layers_pass_alibi_and_lengths_through_either_backend():
    layer = sa.build("sigmoid", dim=64, num_heads=2, causal=True, positional="alibi")
    x = torch.randn(2, 30, 64)
    q, k, v = (layer.heads(p(x)) for p in (layer.q_proj, layer.k_proj, layer.v_proj))
    slopes = sa.alibi_slopes(2)
    torch_path = sa.sigmoid_attention(q, k, v, causal=True, alibi=slopes, backend="torch")
    bias = sa.alibi_bias(slopes, 30, 30).unsqueeze(0)
    assert max_rel_err(torch_path, sa.sigmoid_attention(q, k, v, causal=True, bias=bias)) < 1e-6
    assert max_rel_err(sa.sigmoid_attention(q, k, v, causal=True, alibi=slopes, backend="triton"), torch_path) < 1e-5
    with pytest.raises(ValueError, match="key_lengths must lie in"):
        sa.softmax_attention(q, k, v, key_lengths=torch.tensor([31, 2]))


def test_gpu_benchmark_script_runs_in_smoke_mode(capsys):
    """benchmarks/kernels.py is the script for the lent GPU; its smoke mode runs every part of it on
    the CPU interpreter with tiny shapes, so the GPU run does not fail on a script error."""
    from benchmarks import kernels as bench

    assert bench.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "| lightning |" in out and "TFLOP/s" in out
