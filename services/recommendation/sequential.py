"""Next-item recommenders: SASRec and MQSA-TED, sharing one code path.

Both embed items (scaled by √d) plus learned positions and run causal self-attention blocks; the
loss is a full-softmax cross-entropy over all items at every non-padding position.

* **SASRec** (Kang & McAuley, 2018): one tower whose query at step ``t`` is item ``t`` itself.
* **MQSA-TED** (Zhu et al., WSDM 2024): a short-query tower (SASRec's) and a long-query tower whose
  query at ``t`` is the mask-aware mean of the last ``L`` items (the core's L-query attention); the two
  towers share the item embeddings and their logits are mixed ``α·short + (1-α)·long``. Transition-aware
  embedding distillation adds ``λ·CE(teacher, student)`` where, for each item ``i`` in the batch, the
  teacher is ``softmax(A_i / max_j A_ij / τ)`` over the item transition counts ``A`` of the training
  sequences and the student ``softmax(E_i·Eᵀ·√d / τ)`` over the pre-attention embeddings.

Defaults are the published ones (d = 64, L = 3, α = 0.5, τ = 0.1, λ = 0.1, max length 50, dropout 0.5,
1 block, 1 head).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import shared_attention as sa

from .sequences import pad_left

KINDS = ("mqsa-ted", "sasrec")


@dataclass(frozen=True)
class SeqRecConfig:
    kind: str = "mqsa-ted"
    num_items: int = 100
    max_len: int = 50
    dim: int = 64
    blocks: int = 1
    heads: int = 1
    dropout: float = 0.5
    window: int = 3  # L of the long-query tower
    alpha: float = 0.5  # weight of the short tower's logits
    ted_weight: float = 0.1  # λ
    tau: float = 0.1
    item_ids: list[str] = field(default_factory=list)  # external id of item index i at item_ids[i - 1]
    popularity: list[int] = field(default_factory=list)  # training interactions per item index (for fallback)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def build_model(config: dict | SeqRecConfig) -> SequentialRecommender:
    cfg = config if isinstance(config, SeqRecConfig) else SeqRecConfig(**config)
    return SequentialRecommender(cfg)


class Block(nn.Module):
    """Causal self-attention block in SASRec's arrangement: ``h = LN(q̄) + Attn``; ``h = LN(h)``;
    ``h = h + FFN(h)``; ``window = 1`` is SASRec's own block."""

    def __init__(self, dim: int, heads: int, window: int, dropout: float):
        super().__init__()
        self.attention = sa.LQuerySelfAttention(dim, heads, window=window, dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=1e-8)
        self.ff = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        source = self.attention.query_source(x, mask)
        h = source + self.dropout(self.attention(x, mask, query_source=source))
        h = self.norm(h)
        return (h + self.ff(h)) * mask.unsqueeze(-1)


class Tower(nn.Module):
    def __init__(self, cfg: SeqRecConfig, window: int):
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, window, cfg.dropout) for _ in range(cfg.blocks))
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-8)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)


class SequentialRecommender(nn.Module):
    def __init__(self, config: SeqRecConfig):
        super().__init__()
        self.config = config
        self.items = nn.Embedding(config.num_items + 1, config.dim, padding_idx=0)
        nn.init.normal_(self.items.weight, std=0.01)
        with torch.no_grad():
            self.items.weight[0].zero_()
        self.positions = nn.Embedding(config.max_len, config.dim)
        self.dropout = nn.Dropout(config.dropout)
        self.short = Tower(config, window=1)
        self.long = Tower(config, window=config.window) if config.kind == "mqsa-ted" else None

    def embed(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """``items [B, T]`` (left-padded with 0) → inputs ``[B, T, d]`` and the real-item mask."""
        mask = items > 0
        t = items.shape[1]
        if t > self.config.max_len:
            raise ValueError(f"sequences must have at most max_len={self.config.max_len} items, got {t}")
        positions = torch.arange(t, device=items.device) + (self.config.max_len - t)
        x = self.items(items) * math.sqrt(self.config.dim) + self.positions(positions)
        return self.dropout(x) * mask.unsqueeze(-1), mask

    def user_states(self, items: Tensor) -> Tensor:
        """The representation that scores the next item at every position: ``[B, T, d]`` (the towers'
        mix; scoring is linear, so mixing states equals mixing logits)."""
        x, mask = self.embed(items)
        short = self.short(x, mask)
        if self.long is None:
            return short
        return self.config.alpha * short + (1 - self.config.alpha) * self.long(x, mask)

    def scores(self, items: Tensor) -> Tensor:
        """Next-item scores after the last position: ``[B, num_items + 1]`` (index 0 = padding)."""
        return self.user_states(items)[:, -1] @ self.items.weight.T

    def loss(self, inputs: Tensor, targets: Tensor, teacher: tuple[Tensor, Tensor] | None = None) -> dict[str, Tensor]:
        """Full-softmax CE at non-padding positions (+ TED when ``teacher = (items, probabilities)``)."""
        states = self.user_states(inputs)
        valid = targets > 0
        logits = states[valid] @ self.items.weight.T
        logits[:, 0] = -math.inf
        rec = F.cross_entropy(logits, targets[valid])
        out = {"loss": rec, "rec_loss": rec}
        if teacher is not None and self.config.ted_weight > 0:
            heads, probs = teacher
            student = self.dropout(self.items(heads)) * math.sqrt(self.config.dim) @ self.items.weight.T
            student[:, 0] = -math.inf
            ted = -(probs * F.log_softmax(student / self.config.tau, dim=-1).clamp_min(-1e9)).sum(-1).mean()
            out["ted_loss"] = ted
            out["loss"] = rec + self.config.ted_weight * ted
        return out


def teacher_probabilities(counts: Tensor, heads: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """TED's teacher rows for the head items that have outgoing transitions.

    ``counts``: sparse (or dense) ``[N + 1, N + 1]`` transition counts; returns ``(items, probs)`` with
    ``probs = softmax(A_i / max_j A_ij / τ)`` over items ``1..N``.
    """
    heads = heads.unique()
    heads = heads[heads > 0]
    rows = counts.index_select(0, heads).to_dense() if counts.is_sparse else counts[heads]
    peak = rows.max(dim=1).values
    keep = peak > 0
    heads, rows, peak = heads[keep], rows[keep], peak[keep]
    logits = rows / peak.unsqueeze(1) / tau
    logits[:, 0] = -math.inf
    return heads, torch.softmax(logits, dim=-1)


def training_pairs(sequences: list[list[int]], max_len: int) -> tuple[Tensor, Tensor]:
    """Autoregressive inputs and targets: ``seq[:-1]`` predicts ``seq[1:]`` (last ``max_len`` steps)."""
    from .sequences import pad_left

    usable = [s for s in sequences if len(s) >= 2]
    return pad_left([s[:-1] for s in usable], max_len), pad_left([s[1:] for s in usable], max_len)


@dataclass
class NextItems:
    """One history's answer: the top-k item ids with scores; history ids the model does not know (ignored);
    ``fallback`` = "popularity" when no known item was left, else None."""

    items: list[str]
    scores: list[float]
    unknown_items: list[str]
    fallback: str | None


class NextItemRanker:
    """The top-k next items for batches of histories (external item ids, oldest first): what the app's
    ``/recommend/next`` and the pyfunc model both answer."""

    def __init__(self, model: SequentialRecommender, batch_size: int = 256):
        self.model, self.batch_size = model, batch_size
        cfg = model.config
        self.index = {item: i + 1 for i, item in enumerate(cfg.item_ids)}
        self.item_ids = ["<pad>", *cfg.item_ids]
        self.popularity = torch.tensor(cfg.popularity, dtype=torch.float32)

    @torch.no_grad()
    def top(self, histories: list[list[str]], ks: list[int], exclude_seen: list[bool]) -> list[NextItems]:
        known = [[self.index[i] for i in h if i in self.index] for h in histories]
        usable = [n for n, h in enumerate(known) if h]
        scores: dict[int, Tensor] = {}
        for start in range(0, len(usable), self.batch_size):
            rows = usable[start : start + self.batch_size]
            batch = self.model.scores(pad_left([known[n] for n in rows], self.model.config.max_len)).float()
            scores.update(zip(rows, batch))
        out = []
        for n, (history, k, exclude) in enumerate(zip(histories, ks, exclude_seen)):
            s = scores[n].clone() if known[n] else self.popularity.clone()
            s[0] = -math.inf
            if exclude and known[n]:
                s[torch.tensor(known[n])] = -math.inf
            top = s.topk(min(k, int(torch.isfinite(s).sum())))
            out.append(NextItems(items=[self.item_ids[j] for j in top.indices.tolist()], scores=top.values.tolist(),
                                 unknown_items=[i for i in history if i not in self.index],
                                 fallback=None if known[n] else "popularity"))  # fmt: skip
        return out
