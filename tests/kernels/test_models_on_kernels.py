"""The models reach the fused kernels: with the backend forced to Triton (which refuses any call the
kernels cannot take, instead of falling back), a forward pass of each model that uses the core's
softmax attention runs and equals the PyTorch path. Padding reaches the kernels as key lengths (right
padding: BEACON-B), ALiBi as slopes, rotary positions are applied before the call."""

from __future__ import annotations

import pytest
import torch

from services.genomics.models import GenomicsModel, preset
from services.pointer.models import AttentionModel, PointerConfig

from ..shared_attention.reference import max_rel_err
from .device import DEVICE


def _both(monkeypatch, forward):
    monkeypatch.setenv("ATTENTION_BACKEND", "torch")
    expected = forward()
    monkeypatch.setenv("ATTENTION_BACKEND", "triton")
    got = forward()
    return got, expected


def _sequences(model: GenomicsModel, lengths: list[int]):
    g = torch.Generator().manual_seed(0)
    bases = ["".join("ACGT"[int(i)] for i in torch.randint(0, 4, (n,), generator=g)) for n in lengths]
    ids, mask = model.tokenizer.batch(bases)
    return ids.to(DEVICE), mask.to(DEVICE)


@pytest.mark.parametrize("lengths", [[60, 60], [60, 41]])
def test_beacon_runs_fused_with_padding_and_alibi(monkeypatch, lengths):
    model = GenomicsModel(preset("beacon-mini", l_max=130, head="classify", num_outputs=3)).to(DEVICE).eval()
    ids, mask = _sequences(model, lengths)
    with torch.no_grad():
        got, expected = _both(monkeypatch, lambda: model(ids, mask))
    assert max_rel_err(got, expected) < 1e-4


def test_genomics_transformer_runs_fused(monkeypatch):
    """Causal with rotary positions (sequences of one length: left padding stays on PyTorch)."""
    model = GenomicsModel(preset("transformer-1k", l_max=130, head="lm")).to(DEVICE).eval()
    ids, mask = _sequences(model, [64, 64])
    with torch.no_grad():
        got, expected = _both(monkeypatch, lambda: model(ids, mask))
    assert max_rel_err(got, expected) < 1e-4


def test_pointer_attention_encoder_runs_fused(monkeypatch):
    model = AttentionModel(PointerConfig(kind="attention", task="tsp", hidden=64, layers=2, heads=4, ff_hidden=128))
    model = model.to(DEVICE).eval()
    points = torch.rand(3, 20, 2, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    with torch.no_grad():
        got, expected = _both(monkeypatch, lambda: model.encode(points)["nodes"])
    assert max_rel_err(got, expected) < 1e-4
