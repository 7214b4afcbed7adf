"""The multi-head layer around every sequence mechanism, positional options, streaming decoding,
and the name → mechanism registry."""

from __future__ import annotations

import pytest
import torch

import shared_attention as sa

from .reference import lightning_ref, max_rel_err, softmax_ref


@pytest.mark.parametrize("name", sa.mechanisms(sequence_only=True))
@pytest.mark.parametrize("positional", [None, "rope", "alibi"])
def test_every_sequence_mechanism_builds_by_name(name, positional):
    if name == "lightning" and positional == "alibi":
        with pytest.raises(ValueError, match="ALiBi"):
            sa.build(name, dim=16, num_heads=4, positional=positional)
        return
    layer = sa.build(name, dim=16, num_heads=4, causal=True, positional=positional)
    assert isinstance(layer, sa.MultiHeadAttention) and layer.mechanism == name
    x = torch.randn(2, 11, 16, requires_grad=True)
    key_mask = torch.ones(2, 11, dtype=torch.bool)
    key_mask[1, :3] = False
    out = layer(x, key_mask=key_mask)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    # causal all the way through the layer
    x2 = x.detach().clone()
    x2[:, 8:] += 1
    assert torch.allclose(layer(x2, key_mask=key_mask)[:, :8], out[:, :8], atol=1e-6)


def test_layer_equals_function_on_its_projections():
    layer = sa.SoftmaxAttention(12, 3, positional="alibi", causal=False)
    x = torch.randn(2, 6, 12)
    q, k, v = (layer.heads(p(x)) for p in (layer.q_proj, layer.k_proj, layer.v_proj))
    bias = sa.alibi_bias(sa.alibi_slopes(3), 6, 6, symmetric=True)
    expected = layer.out_proj(layer.merge(softmax_ref(q, k, v, bias=bias).float()))
    assert max_rel_err(layer(x), expected) < 1e-5


def test_cross_attention():
    layer = sa.build("sigmoid", dim=8, num_heads=2, context_dim=5)
    out = layer(torch.randn(3, 4, 8), torch.randn(3, 9, 5), key_mask=torch.ones(3, 9, dtype=torch.bool))
    assert out.shape == (3, 4, 8)
    with pytest.raises(ValueError, match="context must have last dim 5"):
        layer(torch.randn(3, 4, 8), torch.randn(3, 9, 8))
    with pytest.raises(ValueError, match="self attention only"):
        sa.build("lightning", dim=8, num_heads=2)(torch.randn(1, 4, 8), torch.randn(1, 4, 8))


def test_lightning_layer_streams_token_by_token():
    layer = sa.build("lightning", dim=16, num_heads=4, block_size=4)
    x = torch.randn(2, 13, 16)
    full = layer(x)
    state, steps = None, []
    for t in range(13):
        y_t, state = layer.step(x[:, t], state)
        steps.append(y_t)
    assert max_rel_err(torch.stack(steps, 1), full) < 1e-5
    # and the layer's inner attention is the reference formula
    q, k, v = (layer.heads(p(x)) for p in (layer.q_proj, layer.k_proj, layer.v_proj))
    inner = layer.out_proj(layer.merge(lightning_ref(q, k, v, layer.slopes).float()))
    assert max_rel_err(full, inner) < 1e-5


def test_softplus_reweighting_is_a_runtime_switch():
    layer = sa.build("softplus", dim=8, num_heads=2, train_length=16)
    x = torch.randn(1, 10, 8)
    plain = layer(x)
    layer.reweight_power = 4.0
    assert not torch.allclose(layer(x), plain)


def test_registry_lists_every_mechanism_of_the_design():
    expected = {
        "softmax", "sigmoid", "softplus", "lightning", "agent", "bilevel_routing", "large_kernel",
        "heterogeneous", "hiformer", "lquery", "pointer", "compatibility_pointer", "hyena",
    }  # fmt: skip
    assert set(sa.mechanisms()) == expected
    for name in expected:
        entry = sa.get(name)
        assert entry.function.__doc__ and entry.module.__doc__
        assert sa.function(name) is entry.function
    assert isinstance(sa.build("large_kernel", dim=4), sa.LargeKernelAttention)
    assert isinstance(sa.build("hyena", d_model=8, l_max=32), sa.HyenaOperator)


def test_unknown_names_and_bad_layer_settings():
    with pytest.raises(ValueError, match=r"unknown attention mechanism 'flash'.*softmax"):
        sa.build("flash", dim=8, num_heads=2)
    with pytest.raises(ValueError, match="divisible"):
        sa.build("softmax", dim=10, num_heads=3)
    with pytest.raises(ValueError, match="positional"):
        sa.build("softmax", dim=8, num_heads=2, positional="learned")
    layer = sa.build("softmax", dim=8, num_heads=2)
    with pytest.raises(ValueError, match="x must have last dim 8"):
        layer(torch.randn(1, 3, 6))
    with pytest.raises(ValueError, match="x must have rank 3"):
        layer(torch.randn(3, 8))
