"""The attention core of Attention Suite: every mechanism the domain services use, in pure PyTorch.

Each mechanism is a function (the math, on ``[batch, heads, seq, head_dim]`` tensors where it is a
sequence mechanism) and a module (its parameters), with its equation in the docstring; the registry
maps names to both so that models pick a mechanism from config::

    import shared_attention as sa
    layer = sa.build("sigmoid", dim=256, num_heads=4, causal=True)
    out = sa.softmax_attention(q, k, v, causal=True)
"""

from .agent import AgentAttention, agent_attention
from .heterogeneous import (
    HeterogeneousAttention,
    HiformerAttention,
    LowRank,
    heterogeneous_attention,
    hiformer_attention,
)
from .hyena import HyenaFilter, HyenaOperator, fft_long_conv
from .large_kernel import LargeKernelAttention, dilated_depthwise_conv2d, large_kernel_attention
from .lightning import (
    LightningAttention,
    lightning_attention,
    lightning_attention_recurrent,
    lightning_step,
)
from .lquery import LQuerySelfAttention, lquery_attention, window_mean
from .multihead import MultiHeadAttention
from .pointer import CompatibilityPointer, PointerAttention, compatibility_log_probs, pointer_log_probs
from .positional import (
    RotaryEmbedding,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    rope_angles,
    sinusoidal_embedding,
)
from .registry import MECHANISMS, Mechanism, build, function, get, mechanisms
from .routing import BiLevelRoutingAttention, bilevel_routing_attention
from .sigmoid import SigmoidAttention, sigmoid_attention
from .softmax import SoftmaxAttention, attention_weights, softmax_attention
from .softplus import SoftplusAttention, softplus_attention

__all__ = [
    "MECHANISMS",
    "AgentAttention",
    "BiLevelRoutingAttention",
    "CompatibilityPointer",
    "HeterogeneousAttention",
    "HiformerAttention",
    "HyenaFilter",
    "HyenaOperator",
    "LQuerySelfAttention",
    "LargeKernelAttention",
    "LightningAttention",
    "LowRank",
    "Mechanism",
    "MultiHeadAttention",
    "PointerAttention",
    "RotaryEmbedding",
    "SigmoidAttention",
    "SoftmaxAttention",
    "SoftplusAttention",
    "agent_attention",
    "alibi_bias",
    "alibi_slopes",
    "apply_rope",
    "attention_weights",
    "bilevel_routing_attention",
    "build",
    "compatibility_log_probs",
    "dilated_depthwise_conv2d",
    "fft_long_conv",
    "function",
    "get",
    "heterogeneous_attention",
    "hiformer_attention",
    "large_kernel_attention",
    "lightning_attention",
    "lightning_attention_recurrent",
    "lightning_step",
    "lquery_attention",
    "mechanisms",
    "pointer_log_probs",
    "rope_angles",
    "sigmoid_attention",
    "sinusoidal_embedding",
    "softmax_attention",
    "softplus_attention",
    "window_mean",
]
