"""Feature-interaction ranking models for click prediction: Hiformer and its baselines, in one code path.

Every categorical field becomes a token (its embedding), the dense fields together one more token, and
``task_tokens`` learned tokens are prepended (CLS-like); the prediction is an MLP on the task tokens'
outputs after the last layer. Token layers are post-norm (a LayerNorm after each residual) or, with
``norm="pre"``, pre-norm (one before each sublayer and one on the task tokens' outputs). The attention
layer differs:

* ``hiformer``: the core's Hiformer attention (composite projections of all tokens), optionally
  low-rank; the last layer can be pruned to the task tokens for serving (queries, attention and the
  feed-forward computed for them only).
* ``hetero``: the core's heterogeneous attention (per-token projections).
* ``autoint``: a transformer over the tokens with shared projections (AutoInt-like).

Two non-attention baselines share the embeddings: ``mlp`` (concatenated embeddings → MLP) and
``dcnv2`` (a DCN-v2 cross network ``x_{l+1} = x_0 ⊙ (W x_l + b) + x_l`` beside a deep MLP).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

import shared_attention as sa

KINDS = ("hiformer", "hetero", "autoint", "mlp", "dcnv2")
NORMS = ("post", "pre")


@dataclass(frozen=True)
class CTRConfig:
    kind: str = "hiformer"
    cardinalities: list[int] = field(default_factory=list)  # embedding rows per categorical field
    num_dense: int = 0
    dim: int = 16
    layers: int = 2
    heads: int = 2
    head_dim: int = 8
    task_tokens: int = 1
    rank: int | None = None  # low-rank composite projections (hiformer)
    mlp: list[int] = field(default_factory=lambda: [64, 32])
    cross_layers: int = 3
    dropout: float = 0.0
    norm: str = "post"  # token layers: "post" (LayerNorm after each residual) or "pre" (before each sublayer)
    schema: dict = field(default_factory=dict)  # the feature schema, for serving

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")

    @property
    def num_tokens(self) -> int:
        return self.task_tokens + len(self.cardinalities) + (1 if self.num_dense else 0)

    def to_dict(self) -> dict:
        return asdict(self)


def build_model(config: dict | CTRConfig) -> nn.Module:
    cfg = config if isinstance(config, CTRConfig) else CTRConfig(**config)
    if cfg.kind in ("mlp", "dcnv2"):
        return FlatCTR(cfg)
    return TokenCTR(cfg)


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class FeatureTokens(nn.Module):
    """Categorical embeddings (row 0 = out of vocabulary) and one token for the dense fields."""

    def __init__(self, cfg: CTRConfig):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(c, cfg.dim) for c in cfg.cardinalities)
        for e in self.embeddings:
            nn.init.normal_(e.weight, std=0.05)
        self.dense = nn.Linear(cfg.num_dense, cfg.dim) if cfg.num_dense else None

    def forward(self, categorical: Tensor, dense: Tensor) -> Tensor:
        tokens = [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]
        if self.dense is not None:
            tokens.append(self.dense(dense))
        return torch.stack(tokens, dim=1)  # [B, F (+1), dim]


class TokenLayer(nn.Module):
    def __init__(self, cfg: CTRConfig):
        super().__init__()
        length = cfg.num_tokens
        if cfg.kind == "hiformer":
            self.attention = sa.HiformerAttention(length, cfg.dim, cfg.heads, cfg.head_dim, rank=cfg.rank)
        elif cfg.kind == "hetero":
            self.attention = sa.HeterogeneousAttention(length, cfg.dim, cfg.heads, cfg.head_dim)
        else:
            self.attention = sa.SoftmaxAttention(cfg.dim, cfg.heads, head_dim=cfg.head_dim)
        self.shared = cfg.kind == "autoint"
        self.pre = cfg.norm == "pre"
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.ff = nn.Sequential(nn.Linear(cfg.dim, 4 * cfg.dim), nn.GELU(), nn.Linear(4 * cfg.dim, cfg.dim))
        self.norm2 = nn.LayerNorm(cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, query_tokens: list[int] | None = None) -> Tensor:
        """``query_tokens``: compute outputs only for these tokens (last-layer pruning)."""
        residual = x if query_tokens is None else x[:, query_tokens]
        if self.pre:
            h = residual + self.dropout(self._attend(self.norm1(x), query_tokens))
            return h + self.dropout(self.ff(self.norm2(h)))
        h = self.norm1(residual + self.dropout(self._attend(x, query_tokens)))
        return self.norm2(h + self.dropout(self.ff(h)))

    def _attend(self, x: Tensor, query_tokens: list[int] | None) -> Tensor:
        if not self.shared:
            return self.attention(x, query_tokens=query_tokens)
        out = self.attention(x)
        return out if query_tokens is None else out[:, query_tokens]


class TokenCTR(nn.Module):
    """Attention over feature tokens (``hiformer``, ``hetero``, ``autoint``)."""

    def __init__(self, cfg: CTRConfig):
        super().__init__()
        self.config = cfg
        self.features = FeatureTokens(cfg)
        self.task = nn.Parameter(torch.randn(cfg.task_tokens, cfg.dim) * 0.05)
        self.layers = nn.ModuleList(TokenLayer(cfg) for _ in range(cfg.layers))
        self.final_norm = nn.LayerNorm(cfg.dim) if cfg.norm == "pre" else nn.Identity()
        self.head = nn.Sequential(_mlp([cfg.task_tokens * cfg.dim, *cfg.mlp], cfg.dropout), nn.Linear(cfg.mlp[-1], 1))
        self.prune = False

    def forward(self, categorical: Tensor, dense: Tensor) -> Tensor:
        """Click logits ``[B]``."""
        x = self.features(categorical, dense)
        x = torch.cat([self.task.expand(x.shape[0], -1, -1), x], dim=1)
        task = list(range(self.config.task_tokens))
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            x = layer(x, query_tokens=task if (last and self.prune) else None)
        return self.head(self.final_norm(x[:, : self.config.task_tokens]).flatten(1)).squeeze(-1)

    @torch.no_grad()
    def for_serving(self, rank: int | None = None) -> TokenCTR:
        """A copy with the last layer pruned to the task tokens; for Hiformer, ``rank`` re-factorises the
        composite projections (truncated SVD of the trained matrices), None keeps them as trained (full
        or low-rank)."""
        target = rank if rank is not None and self.config.kind == "hiformer" else self.config.rank
        served = TokenCTR(CTRConfig(**{**self.config.to_dict(), "rank": target}))
        same = target == self.config.rank
        served.load_state_dict(
            {k: v for k, v in self.state_dict().items() if same or not _is_composite(k)}, strict=same
        )
        if not same:
            for mine, theirs in zip(served.layers, self.layers):
                mine.attention = theirs.attention.factorize(target)
        served.prune = True
        return served.eval()


def _is_composite(key: str) -> bool:
    return ".attention.w" in key and not key.endswith(".wo")


class FlatCTR(nn.Module):
    """``mlp`` and ``dcnv2``: no attention; the embeddings concatenated."""

    def __init__(self, cfg: CTRConfig):
        super().__init__()
        self.config = cfg
        self.features = FeatureTokens(cfg)
        width = cfg.dim * (len(cfg.cardinalities) + (1 if cfg.num_dense else 0))
        self.deep = _mlp([width, *cfg.mlp], cfg.dropout)
        if cfg.kind == "dcnv2":
            self.cross = nn.ModuleList(nn.Linear(width, width) for _ in range(cfg.cross_layers))
            self.out = nn.Linear(width + cfg.mlp[-1], 1)
        else:
            self.cross = None
            self.out = nn.Linear(cfg.mlp[-1], 1)
        self.prune = False

    def forward(self, categorical: Tensor, dense: Tensor) -> Tensor:
        x0 = self.features(categorical, dense).flatten(1)
        deep = self.deep(x0)
        if self.cross is None:
            return self.out(deep).squeeze(-1)
        x = x0
        for layer in self.cross:
            x = x0 * layer(x) + x
        return self.out(torch.cat([x, deep], dim=1)).squeeze(-1)
