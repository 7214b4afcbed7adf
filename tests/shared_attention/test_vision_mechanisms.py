"""Agent attention, bi-level routing attention and large kernel attention against float64 references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import shared_attention as sa

from .reference import max_rel_err, softmax_ref

FP32_REL = 1e-5
GRAD_REL = 1e-4


# ---------------------------------------------------------------- agent attention
def _agent_ref(q, k, v, agents, b1, b2, scale):
    """V_A = softmax(A Kᵀ s + B₁) V ; O = softmax(Q Aᵀ s + B₂) V_A, with explicit matrices."""
    q, k, v, a = (t.double() for t in (q, k, v, agents))
    agg = torch.softmax(a @ k.transpose(-1, -2) * scale + b1.double(), dim=-1) @ v
    return torch.softmax(q @ a.transpose(-1, -2) * scale + b2.double(), dim=-1) @ agg


def test_agent_attention_function():
    b, h, n, na, d = 2, 3, 20, 4, 8
    q, k, v = torch.randn(b, h, n, d), torch.randn(b, h, n, d), torch.randn(b, h, n, d)
    agents = torch.randn(b, h, na, d)
    b1, b2 = torch.randn(1, h, na, n), torch.randn(1, h, n, na)
    out = sa.agent_attention(q, k, v, agents, agent_bias=b1, query_bias=b2)
    assert max_rel_err(out, _agent_ref(q, k, v, agents, b1, b2, d**-0.5)) < FP32_REL

    leaves = [t.clone().requires_grad_(True) for t in (q, k, v, agents)]
    sa.agent_attention(*leaves, agent_bias=b1, query_bias=b2).square().sum().backward()
    ref_leaves = [t.double().requires_grad_(True) for t in (q, k, v, agents)]
    _agent_ref(*ref_leaves, b1, b2, d**-0.5).square().sum().backward()
    for got, want in zip(leaves, ref_leaves):
        assert max_rel_err(got.grad, want.grad) < GRAD_REL


def test_agent_attention_with_all_agents_equals_linearised_form():
    """O = σ(QAᵀ)σ(AKᵀ)V: a generalised linear attention of cost O(N·n·d)."""
    q, k, v = (torch.randn(1, 1, 30, 4) for _ in range(3))
    agents = torch.randn(1, 1, 5, 4)
    s = 0.5
    phi_q = torch.softmax(q @ agents.transpose(-1, -2) * s, dim=-1)  # [N, n]
    phi_k = torch.softmax(agents @ k.transpose(-1, -2) * s, dim=-1)  # [n, N]
    assert max_rel_err(sa.agent_attention(q, k, v, agents, scale=s), phi_q @ (phi_k @ v)) < FP32_REL


def test_agent_layer_pools_queries_and_adds_dwc():
    layer = sa.AgentAttention(16, 2, (6, 6), agent_num=4, num_prefix_tokens=1)
    x = torch.randn(2, 37, 16)
    out = layer(x)
    assert out.shape == x.shape
    # recompute by hand from the layer's parameters
    q, k, v = layer.qkv(x).view(2, 37, 3, 2, 8).permute(2, 0, 3, 1, 4)
    patch_q = q[:, :, 1:].reshape(2, 2, 6, 6, 8)
    agents = torch.stack(
        [patch_q[:, :, i * 3 : i * 3 + 3, j * 3 : j * 3 + 3].mean((2, 3)) for i in range(2) for j in range(2)],
        dim=2,
    )
    b1, b2 = layer.biases()
    o = _agent_ref(q, k, v, agents, b1, b2, 8**-0.5).float().transpose(1, 2).reshape(2, 37, 16)
    v_img = v[:, :, 1:].transpose(1, 2).reshape(2, 6, 6, 16).permute(0, 3, 1, 2)
    local = layer.dwc(v_img).permute(0, 2, 3, 1).reshape(2, 36, 16)
    o = torch.cat([o[:, :1], o[:, 1:] + local], dim=1)
    assert max_rel_err(out, layer.proj(o)) < FP32_REL
    out.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


def test_agent_layer_rejects_bad_input():
    with pytest.raises(ValueError, match="perfect square"):
        sa.AgentAttention(16, 2, (4, 4), agent_num=5)
    layer = sa.AgentAttention(16, 2, (4, 4), agent_num=4)
    with pytest.raises(ValueError, match="x must have shape"):
        layer(torch.randn(1, 15, 16))


# ---------------------------------------------------------------- bi-level routing attention
def _bra_ref(q, k, v, grid, regions, topk, scale):
    """Per-query loops: route the query's region to the top-k regions by region-mean affinity."""
    q, k, v = q.double(), k.double(), v.double()
    b, h, _, _ = q.shape
    height, width = grid
    rh = math.ceil(height / regions)
    nh = math.ceil(height / rh)
    rw = math.ceil(width / regions)
    nw = math.ceil(width / rw)
    region_of = {}
    members: dict[int, list[int]] = {}
    for y in range(height):
        for x in range(width):
            r = (y // rh) * nw + (x // rw)
            region_of[y * width + x] = r
            members.setdefault(r, []).append(y * width + x)
    n_regions = nh * nw
    out = torch.zeros(b, h, height * width, v.shape[-1], dtype=torch.float64)
    for bi in range(b):
        qm = torch.stack([q[bi][:, members[r]].mean(1).reshape(-1) for r in range(n_regions)])
        km = torch.stack([k[bi][:, members[r]].mean(1).reshape(-1) for r in range(n_regions)])
        routes = (qm @ km.T).topk(min(topk, n_regions), dim=-1).indices
        for t in range(height * width):
            keys = [j for r in routes[region_of[t]].tolist() for j in members[r]]
            for hi in range(h):
                w = torch.softmax(k[bi, hi, keys] @ q[bi, hi, t] * scale, dim=0)
                out[bi, hi, t] = w @ v[bi, hi, keys]
    return out


@pytest.fixture(params=["gathered", "dense"])
def routing_path(request, monkeypatch):
    """Each test below runs on both implementations: per-region batches of gathered keys, and one dense
    pass with the routes as a mask (chosen by map size and routed share; forced here)."""
    from shared_attention import routing

    monkeypatch.setattr(routing, "_DENSE_ELEMENTS", 0 if request.param == "gathered" else 1 << 30)
    monkeypatch.setattr(routing, "_SMALL_MAP", 1 << 30)
    return request.param


@pytest.mark.parametrize(("grid", "regions", "topk"), [((8, 8), 4, 3), ((7, 9), 3, 2), ((5, 5), 2, 1)])
def test_bilevel_routing_matches_reference(grid, regions, topk, routing_path):
    n = grid[0] * grid[1]
    q, k, v = (torch.randn(2, 2, n, 8) for _ in range(3))
    out = sa.bilevel_routing_attention(q, k, v, grid=grid, regions=regions, topk=topk)
    assert max_rel_err(out, _bra_ref(q, k, v, grid, regions, topk, 8**-0.5)) < FP32_REL


def test_bilevel_routing_gradients_and_chunking(monkeypatch, routing_path):
    from shared_attention import routing

    q, k, v = (torch.randn(1, 2, 36, 4) for _ in range(3))
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    whole = sa.bilevel_routing_attention(*leaves, grid=(6, 6), regions=3, topk=2)
    whole.square().sum().backward()
    ref_leaves = [t.double().requires_grad_(True) for t in (q, k, v)]
    _bra_ref(*ref_leaves, (6, 6), 3, 2, 0.5).square().sum().backward()
    for got, want in zip(leaves, ref_leaves):
        assert max_rel_err(got.grad, want.grad) < GRAD_REL
    monkeypatch.setattr(routing, "_GATHER_ELEMENTS", 1)  # one region per chunk
    chunked = sa.bilevel_routing_attention(q, k, v, grid=(6, 6), regions=3, topk=2)
    assert max_rel_err(chunked, whole) < 1e-6


def test_bilevel_routing_with_all_regions_is_full_attention(routing_path):
    q, k, v = (torch.randn(1, 2, 35, 8) for _ in range(3))
    out = sa.bilevel_routing_attention(q, k, v, grid=(5, 7), regions=3, topk=None)
    assert max_rel_err(out, softmax_ref(q, k, v)) < FP32_REL


def test_bilevel_routing_layer_and_errors():
    layer = sa.BiLevelRoutingAttention(16, 2, regions=2, topk=2)
    x = torch.randn(2, 5, 6, 16)
    assert layer(x).shape == x.shape
    with pytest.raises(ValueError, match="channels last"):
        layer(torch.randn(2, 16, 5, 6))
    q = torch.randn(1, 1, 12, 4)
    with pytest.raises(ValueError, match="grid"):
        sa.bilevel_routing_attention(q, q, q, grid=(3, 3), regions=2, topk=1)
    with pytest.raises(ValueError, match="topk"):
        sa.bilevel_routing_attention(q, q, q, grid=(3, 4), regions=2, topk=0)


# ---------------------------------------------------------------- large kernel attention
def test_lka_equals_one_large_depthwise_kernel():
    """5×5 then 7×7 dilation-3 depthwise convs compose into one 23×23 depthwise kernel (interior)."""
    torch.manual_seed(1)
    layer = sa.LargeKernelAttention(3).double()
    with torch.no_grad():
        layer.local.bias.zero_()
        layer.dilated.bias.zero_()
    x = torch.randn(1, 3, 40, 40, dtype=torch.float64)
    out = layer(x)
    # compose the kernels: place the dilated 7×7 on a 19×19 grid, then full-convolve with the 5×5
    dilated = torch.zeros(3, 1, 19, 19, dtype=torch.float64)
    dilated[:, :, ::3, ::3] = layer.dilated.weight
    composed = F.conv2d(
        F.pad(dilated, (4, 4, 4, 4)).permute(1, 0, 2, 3), layer.local.weight.flip(-1, -2), groups=3
    ).permute(1, 0, 2, 3)
    assert composed.shape[-1] == 23  # receptive field K + 2 for K = 21
    big = F.conv2d(x, composed, padding=11, groups=3)
    expected = x * F.conv2d(big, layer.pointwise.weight, layer.pointwise.bias)
    interior = (slice(None), slice(None), slice(11, -11), slice(11, -11))
    assert max_rel_err(out[interior], expected[interior]) < 1e-10


def test_lka_function_matches_module_and_errors():
    layer = sa.LargeKernelAttention(4, kernel_size=21, dilation=3)
    assert layer.local.kernel_size == (5, 5) and layer.dilated.kernel_size == (7, 7)
    assert layer.dilated.dilation == (3, 3)
    x = torch.randn(2, 4, 9, 11)
    assert layer(x).shape == x.shape
    with pytest.raises(ValueError, match="channels"):
        layer(torch.randn(2, 3, 9, 11))
    with pytest.raises(ValueError, match="rank 4"):
        layer(torch.randn(4, 9, 11))


@pytest.mark.parametrize("dilation,k", [(3, 7), (2, 5), (3, 3)])
def test_dilated_depthwise_conv_equals_the_dilated_conv_at_every_map_size(dilation, k):
    """The CPU path (dropped taps, d × d phase grids) against torch's dilated conv, in float64, values and
    gradients, on maps from 1 px (a per-channel scale) to larger than the kernel's span, square or not."""
    torch.manual_seed(2)
    c = 3
    for h, w in [(1, 1), (2, 5), (4, 4), (7, 7), (9, 13), (19, 20), (24, 24)]:
        x = torch.randn(2, c, h, w, dtype=torch.float64, requires_grad=True)
        weight = torch.randn(c, 1, k, k, dtype=torch.float64, requires_grad=True)
        bias = torch.randn(c, dtype=torch.float64, requires_grad=True)
        out = sa.dilated_depthwise_conv2d(x, weight, bias, dilation)
        ref = F.conv2d(x, weight, bias, padding=dilation * (k // 2), dilation=dilation, groups=c)
        assert out.shape == ref.shape and max_rel_err(out, ref) < 1e-12, (h, w)
        grads = torch.autograd.grad(out.square().sum(), (x, weight, bias))
        ref_grads = torch.autograd.grad(ref.square().sum(), (x, weight, bias))
        assert all(max_rel_err(g, r) < 1e-12 for g, r in zip(grads, ref_grads)), (h, w)
    for h in (1, 24):  # without a bias
        x = torch.randn(1, c, h, h, dtype=torch.float64)
        ref = F.conv2d(x, weight, None, padding=dilation * (k // 2), dilation=dilation, groups=c)
        assert max_rel_err(sa.dilated_depthwise_conv2d(x, weight, None, dilation), ref) < 1e-12
