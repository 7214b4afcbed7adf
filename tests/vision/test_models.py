"""Every registered vision model builds through timm, runs forward and backward, exposes timm's model
surface, and matches its published size at 224² (parameters and multiply-accumulates within 3%)."""

from __future__ import annotations

import pytest
import timm
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import services.vision  # noqa: F401
from services.vision import models as vm

# (params M, GMACs at 224²) from the papers / official repositories
PUBLISHED = {
    "van_b0": (4.11, 0.88),
    "van_b1": (13.86, 2.52),
    "biformer_tiny": (13.1, 2.2),
    "biformer_small": (25.5, 4.5),
    "agent_deit_tiny": (6.0, 1.2),
    "agent_deit_small": (22.7, 4.4),
    "agent_swin_tiny": (29.0, 4.5),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_sizes(name, monkeypatch):
    from shared_attention import routing

    # the routed algorithm's MACs, as published: the dense fast path of small maps also scores masked keys
    monkeypatch.setattr(routing, "_DENSE_ELEMENTS", 0)
    model = timm.create_model(name).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    # the math SDPA backend decomposes attention into matmuls the FLOP counter sees
    with FlopCounterMode(display=False) as counter, torch.no_grad(), sdpa_kernel([SDPBackend.MATH]):
        model(torch.randn(1, 3, 224, 224))
    gmacs = counter.get_total_flops() / 2e9  # the counter counts 2 FLOPs per multiply-accumulate
    want_params, want_gmacs = PUBLISHED[name]
    assert abs(params / want_params - 1) < 0.03, f"{params:.2f} M vs {want_params}"
    assert abs(gmacs / want_gmacs - 1) < 0.03, f"{gmacs:.3f} G vs {want_gmacs}"


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("biformer_tiny", 13_142_760),  # the official biformer_tiny's count
        ("biformer_small", 25_536_232),
        ("biformer_base", 56_804_968),
        ("biformer_small_input", 1_262_346),
    ],
)
def test_biformer_parameter_counts_are_pinned(name, count):
    """BRA in stages 1-3, and in the last stage 8-head attention with LePE and no qkv bias."""
    assert sum(p.numel() for p in timm.create_model(name).parameters()) == count


@pytest.mark.parametrize("name", ["van_small_input", "biformer_small_input", "agent_deit_small_input"])
def test_small_input_models_train_step_and_timm_surface(name):
    model = timm.create_model(name)
    x = torch.randn(3, 1, 28, 28)
    out = model(x)
    assert out.shape == (3, 10)
    out.logsumexp(-1).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    features = model.forward_features(x)
    assert model.forward_head(features, pre_logits=True).shape == (3, model.num_features)
    model.reset_classifier(4)
    assert model(x).shape == (3, 4) and model.num_classes == 4
    assert model.pretrained_cfg["input_size"] == (1, 28, 28)


@pytest.mark.parametrize("size", [32, 48, 64])
def test_small_inputs_of_other_sizes(size):
    """Grids that do not divide into regions or windows are padded, not refused."""
    for name, kwargs in [("van_small_input", {}), ("biformer_small_input", {}),
                         ("agent_deit_small_input", {"img_size": size})]:  # fmt: skip
        model = timm.create_model(name, **kwargs).eval()
        assert model(torch.randn(2, 1, size, size)).shape == (2, 10)


def test_entrypoints_accept_timm_arguments_and_refuse_pretrained():
    assert timm.create_model("van_b0", num_classes=7, in_chans=1)(torch.randn(1, 1, 64, 64)).shape == (1, 7)
    with pytest.raises(ValueError, match="no pretrained"):
        timm.create_model("van_b0", pretrained=True)


def test_build_model_from_config_and_grad_cam():
    model = vm.build_model({"arch": "agent_deit_small_input"})
    maps, logits = vm.grad_cam(model, torch.randn(2, 1, 28, 28))
    assert maps.shape == (2, 28, 28) and logits.shape == (2, 10)
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1 + 1e-6
    van = vm.build_model({"arch": "van_small_input"})
    assert vm.grad_cam(van, torch.randn(1, 1, 28, 28))[0].shape == (1, 28, 28)


def test_importing_the_package_alone_registers_the_models():
    """``import services.vision`` is all a user does before ``timm.create_model("van_b0")``: checked in a
    fresh interpreter, since this test module's own imports would register them anyway."""
    import subprocess
    import sys

    code = (
        "import timm, services.vision\n"
        "names = ['van_b0', 'biformer_tiny', 'agent_deit_tiny', 'agent_swin_tiny']\n"
        "missing = [n for n in names if not timm.is_model(n)]\n"
        "assert not missing, missing\n"
        "print(type(timm.create_model('van_b0', num_classes=3)).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("VAN")


def test_biformer_last_stage_attention_is_mhsa_plus_lepe_of_the_input():
    from services.vision.biformer import AttentionLePE

    torch.manual_seed(0)
    layer = AttentionLePE(16).double()
    x = torch.randn(2, 3, 4, 16, dtype=torch.float64)
    q, k, v = layer.qkv(x.reshape(2, 12, 16)).chunk(3, dim=-1)
    heads = [slice(h * 2, h * 2 + 2) for h in range(8)]
    attn = torch.cat([torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / 2**0.5, -1) @ v[..., s] for s in heads], -1)
    lepe = layer.lepe(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(2, 12, 16)
    expected = layer.proj(attn + lepe).reshape(2, 3, 4, 16)
    assert layer.qkv.bias is None and torch.allclose(layer(x), expected, atol=1e-12)
