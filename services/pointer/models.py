"""Pointer models on the core's attention.

* :class:`PointerNet` — Vinyals et al. (2015): an LSTM encoder over the points, an LSTM decoder fed the
  coordinates of the previously chosen point, and the core's additive pointer attention
  ``u_j = vᵀ tanh(W₁ e_j + W₂ d)`` over the encoder states (plus a learned END state for tasks whose
  answers vary in length).
* :class:`AttentionModel` — Kool et al. (2019): a transformer encoder without positional encoding
  (the core's softmax attention, batch norm, feed-forward), and a decoder whose context is the graph
  embedding with the first and last chosen points; one multi-head glimpse (core softmax attention over
  the allowed points) then the compatibility ``C · tanh(qᵀk/√d)`` of that single query with the node keys
  (``C = 10``; the core's ``compatibility_pointer``).

Both expose ``encode(points)``, ``initial_state(encoded)`` and ``step(encoded, state, constraint)``,
which ``services.pointer.search`` drives for every task and decoding strategy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

import shared_attention as sa

from .constraints import TASKS, Constraint
from .problems import INPUT_ORDERS

MODEL_KINDS = ("ptrnet", "attention")


@dataclass(frozen=True)
class PointerConfig:
    """Architecture of one pointer model (the part of a preset the model is rebuilt from)."""

    kind: str = "attention"  # "ptrnet" | "attention"
    task: str = "tsp"  # "tsp" | "convex_hull" | "delaunay"
    hidden: int = 128
    layers: int = 3  # attention model encoder layers
    heads: int = 8
    ff_hidden: int = 512
    clip: float = 10.0  # attention model logit clipping C
    input_order: str = "given"  # "given" | "x": the order the model sees the points in (problems.in_model_order)

    def __post_init__(self):
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"kind must be one of {MODEL_KINDS}, got {self.kind!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.input_order not in INPUT_ORDERS:
            raise ValueError(f"input_order must be one of {INPUT_ORDERS}, got {self.input_order!r}")

    @property
    def has_end(self) -> bool:
        return self.task != "tsp"

    def to_dict(self) -> dict:
        return asdict(self)


def build_model(config: dict | PointerConfig) -> nn.Module:
    """Rebuild a model from its config (what the registry stores next to the weights)."""
    cfg = config if isinstance(config, PointerConfig) else PointerConfig(**config)
    return PointerNet(cfg) if cfg.kind == "ptrnet" else AttentionModel(cfg)


def _rows(batch: int) -> Tensor:
    return torch.arange(batch)


class PointerNet(nn.Module):
    """Pointer Network with LSTM encoder/decoder and additive pointer attention."""

    def __init__(self, config: PointerConfig):
        super().__init__()
        self.config = config
        h = config.hidden
        self.embed = nn.Linear(2, h)
        self.encoder = nn.LSTM(h, h, batch_first=True)
        self.decoder = nn.LSTMCell(h, h)
        self.start = nn.Parameter(torch.empty(h).uniform_(-0.08, 0.08))
        self.end_state = nn.Parameter(torch.empty(h).uniform_(-0.08, 0.08)) if config.has_end else None
        self.pointer = sa.PointerAttention(h, h, h)

    def encode(self, points: Tensor) -> dict[str, Tensor]:
        embedded = self.embed(points)
        outputs, (h_n, c_n) = self.encoder(embedded)
        if self.end_state is not None:
            outputs = torch.cat([outputs, self.end_state.expand(points.shape[0], 1, -1)], dim=1)
        return {"embedded": embedded, "keys": self.pointer.project_keys(outputs), "h": h_n[0], "c": c_n[0]}

    def initial_state(self, encoded: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return encoded["h"], encoded["c"]

    def step(
        self, encoded: dict[str, Tensor], state: tuple[Tensor, Tensor], constraint: Constraint
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        b = encoded["keys"].shape[0]
        last = constraint.last
        previous = encoded["embedded"][_rows(b), last.clamp_min(0)]
        x = torch.where((last < 0).unsqueeze(1), self.start.expand(b, -1), previous)
        h, c = self.decoder(x, state)
        return self.pointer(encoded["keys"], h, mask=constraint.mask()), (h, c)


class EncoderLayer(nn.Module):
    """Kool et al.'s encoder layer: ``BN(h + MHA(h))`` then ``BN(h + FF(h))``."""

    def __init__(self, dim: int, heads: int, ff_hidden: int):
        super().__init__()
        self.attention = sa.build("softmax", dim=dim, num_heads=heads, qkv_bias=False)
        self.norm1 = nn.BatchNorm1d(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_hidden), nn.ReLU(), nn.Linear(ff_hidden, dim))
        self.norm2 = nn.BatchNorm1d(dim)

    @staticmethod
    def _norm(norm: nn.BatchNorm1d, x: Tensor) -> Tensor:
        return norm(x.reshape(-1, x.shape[-1])).view_as(x)

    def forward(self, x: Tensor) -> Tensor:
        x = self._norm(self.norm1, x + self.attention(x))
        return self._norm(self.norm2, x + self.ff(x))


class AttentionModel(nn.Module):
    """Attention model: transformer encoder without positions, glimpse + pointer decoder."""

    def __init__(self, config: PointerConfig):
        super().__init__()
        self.config = config
        d, heads = config.hidden, config.heads
        if d % heads:
            raise ValueError(f"hidden ({d}) must be divisible by heads ({heads})")
        self.embed = nn.Linear(2, d)
        self.layers = nn.ModuleList(EncoderLayer(d, heads, config.ff_hidden) for _ in range(config.layers))
        self.end_node = (
            nn.Parameter(torch.empty(d).uniform_(-1 / math.sqrt(d), 1 / math.sqrt(d))) if config.has_end else None
        )
        self.first_placeholder = nn.Parameter(torch.empty(d).uniform_(-1, 1))
        self.last_placeholder = nn.Parameter(torch.empty(d).uniform_(-1, 1))
        self.context = nn.Linear(3 * d, d, bias=False)
        self.glimpse_kv = nn.Linear(d, 2 * d, bias=False)
        self.glimpse_out = nn.Linear(d, d, bias=False)
        self.pointer = sa.build("compatibility_pointer", dim=d, clip=config.clip)

    def encode(self, points: Tensor) -> dict[str, Tensor]:
        h = self.embed(points)
        for layer in self.layers:
            h = layer(h)
        graph = h.mean(dim=1)
        nodes = h
        if self.end_node is not None:
            nodes = torch.cat([h, self.end_node.expand(h.shape[0], 1, -1)], dim=1)
        b, n, d = nodes.shape
        heads = self.config.heads
        k, v = self.glimpse_kv(nodes).view(b, n, 2, heads, d // heads).permute(2, 0, 3, 1, 4)
        return {
            "nodes": h,
            "graph": graph,
            "glimpse_k": k,
            "glimpse_v": v,
            "keys": self.pointer.project_keys(nodes),
        }

    def initial_state(self, encoded: dict[str, Tensor]) -> None:
        return None

    def step(self, encoded: dict[str, Tensor], state: None, constraint: Constraint) -> tuple[Tensor, None]:
        nodes = encoded["nodes"]
        b, _, d = nodes.shape
        rows = _rows(b)

        def pick(index: Tensor, placeholder: Tensor) -> Tensor:
            return torch.where((index < 0).unsqueeze(1), placeholder.expand(b, -1), nodes[rows, index.clamp_min(0)])

        context = torch.cat(
            [
                encoded["graph"],
                pick(constraint.first, self.first_placeholder),
                pick(constraint.last, self.last_placeholder),
            ],
            dim=1,
        )
        query = self.context(context)
        mask = constraint.mask()
        heads = self.config.heads
        q = query.view(b, heads, 1, d // heads)
        glimpse = sa.softmax_attention(q, encoded["glimpse_k"], encoded["glimpse_v"], key_mask=mask)
        query = self.glimpse_out(glimpse.reshape(b, d))
        return self.pointer(encoded["keys"], query, mask=mask), None
