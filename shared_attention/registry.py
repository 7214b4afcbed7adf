"""Name → mechanism table, so models choose their attention from config.

Each entry pairs the mechanism's function (the math, on tensors) with its module (the parameters)
and one line on what it is for. ``build("sigmoid", dim=256, num_heads=4, causal=True)`` gives a layer;
``function("lightning")`` the bare function. The table is data: adding a mechanism is one row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from .agent import AgentAttention, agent_attention
from .heterogeneous import (
    HeterogeneousAttention,
    HiformerAttention,
    heterogeneous_attention,
    hiformer_attention,
)
from .hyena import HyenaOperator, fft_long_conv
from .large_kernel import LargeKernelAttention, large_kernel_attention
from .lightning import LightningAttention, lightning_attention
from .lquery import LQuerySelfAttention, lquery_attention
from .pointer import CompatibilityPointer, PointerAttention, compatibility_log_probs, pointer_log_probs
from .routing import BiLevelRoutingAttention, bilevel_routing_attention
from .sigmoid import SigmoidAttention, sigmoid_attention
from .softmax import SoftmaxAttention, softmax_attention
from .softplus import SoftplusAttention, softplus_attention


@dataclass(frozen=True)
class Mechanism:
    name: str
    function: Callable[..., Any]
    module: type[nn.Module]
    summary: str
    sequence: bool  # takes [b, h, n, d] q/k/v and fits the MultiHeadAttention layer


MECHANISMS: dict[str, Mechanism] = {
    m.name: m
    for m in (
        Mechanism("softmax", softmax_attention, SoftmaxAttention, "scaled dot-product attention", True),
        Mechanism("sigmoid", sigmoid_attention, SigmoidAttention, "sigmoid(qk/√d - log n), no normalisation", True),
        Mechanism(
            "softplus",
            softplus_attention,
            SoftplusAttention,
            "ℓ1-normalised softplus, log-length scale",
            True,
        ),
        Mechanism("lightning", lightning_attention, LightningAttention, "decayed linear attention, chunked", True),
        Mechanism("agent", agent_attention, AgentAttention, "agent aggregation then broadcast", False),
        Mechanism(
            "bilevel_routing",
            bilevel_routing_attention,
            BiLevelRoutingAttention,
            "top-k region routing",
            False,
        ),
        Mechanism(
            "large_kernel",
            large_kernel_attention,
            LargeKernelAttention,
            "decomposed large-kernel conv",
            False,
        ),
        Mechanism("heterogeneous", heterogeneous_attention, HeterogeneousAttention, "per-feature projections", False),
        Mechanism("hiformer", hiformer_attention, HiformerAttention, "composite projections, low rank", False),
        Mechanism("lquery", lquery_attention, LQuerySelfAttention, "query = mean of the last L items", False),
        Mechanism("pointer", pointer_log_probs, PointerAttention, "additive attention over inputs", False),
        Mechanism(
            "compatibility_pointer",
            compatibility_log_probs,
            CompatibilityPointer,
            "C·tanh(qk/√d) over inputs (attention model)",
            False,
        ),
        Mechanism("hyena", fft_long_conv, HyenaOperator, "implicit long convolution by FFT", False),
    )
}


def mechanisms(*, sequence_only: bool = False) -> list[str]:
    """Registered mechanism names (only those usable in :class:`MultiHeadAttention` if asked)."""
    return [name for name, m in MECHANISMS.items() if m.sequence or not sequence_only]


def get(name: str) -> Mechanism:
    """The registry entry for ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return MECHANISMS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown attention mechanism {name!r}; known: {', '.join(MECHANISMS)}") from None


def function(name: str) -> Callable[..., Any]:
    """The mechanism's function (the math)."""
    return get(name).function


def build(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the mechanism's module with ``kwargs`` (its constructor's arguments)."""
    return get(name).module(**kwargs)
