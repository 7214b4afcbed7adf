"""Genomic language models: HyenaDNA, BEACON-B and a same-size softmax transformer.

* **HyenaDNA** (Nguyen et al., 2023): token embedding (no positions), pre-norm blocks of the core's Hyena
  operator (order 2, implicit filters, causal) and an MLP, a final LayerNorm, and a language-model head
  tied to the embedding. Causal, so inputs are padded on the left.
* **transformer**: the same blocks with causal softmax attention and rotary positions in place of Hyena
  (the paper's GPT comparison), for side-by-side tables and the long-context benchmark.
* **BEACON-B** (Ren et al., 2024): a bidirectional encoder with symmetric ALiBi and no learned positions
  over BEACON's single-nucleotide vocabulary, a BERT masked-LM head (dense, GELU, LayerNorm, tied
  decoder) and BERT's pooler (dense + tanh on ``<cls>``) for sequence-level heads. Post-norm blocks as the
  published BERT-style encoder (``LN(x + mixer(x))``, a LayerNorm on the embeddings, none at the end);
  ``norm="pre"`` (ESM's arrangement, the HyenaDNA and transformer default) stays an option.

Every model answers the same calls: ``hidden(ids, mask)`` (``[b, L, d]``), ``pooled`` (one vector per
sequence: mean over real tokens, or the pooler for BEACON), and ``forward`` which applies the configured
head: ``lm`` (next-token logits), ``mlm`` (masked-token logits), ``classify``/``regress`` (per sequence)
or ``tag`` (per token). A sequence head can add linear "wide" branches (:class:`.wide.WideBranches`): the
logits of a linear baseline's features (tf-idf k-mers, ``kmer_features``; the one-hot of aligned sequences,
``onehot_length``) summed with the deep head's, so that a model trained on a few hundred sequences need not
lose to that baseline. Presets are
named after the published models; :func:`build_model` rebuilds a
model from its JSON config.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import shared_attention as sa

from .tokenizer import BEACON, HYENA, Tokenizer
from .wide import WideBranches

ARCHS = ("hyena", "transformer", "beacon", "lightning")
# The attention an attention arch may use, from the core's registry (first: the arch's own).
ATTENTION = {"transformer": ("softmax", "sigmoid"), "beacon": ("softmax", "sigmoid"), "lightning": ("lightning",)}
HEADS = ("lm", "mlm", "classify", "regress", "tag")
POOLINGS = ("mean", "max", "last")  # sequence heads of the models without a pooler (BEACON-B has one)
KMER_MAX = 6  # the k-mer branch's longest k-mer (4^6 = 4,096 features of its own)


@dataclass(frozen=True)
class GenomicsConfig:
    arch: str = "hyena"
    d_model: int = 128
    n_layer: int = 2
    d_inner: int = 0  # MLP width; 0 = 4 × d_model
    l_max: int = 1026  # longest token sequence (HyenaDNA: max_length + 2)
    num_heads: int = 4  # attention models
    attention: str = ""  # the attention archs' mechanism (see ATTENTION); "" = the arch's own
    embed_dropout: float = 0.1
    dropout: float = 0.0  # residual / hidden dropout
    attn_dropout: float = 0.0
    head: str = "lm"
    num_outputs: int = 0  # classes (classify/tag) or targets (regress)
    labels: list[str] = field(default_factory=list)  # class names, index = output
    task: str = ""  # the fine-tuning task, for the service
    pooling: str = "mean"  # sequence heads of HyenaDNA / transformer: "mean" or "max" over real tokens, or "last"
    rc_average: bool = False  # average predictions over the reverse complement (trained with RC augmentation)
    kmer_features: int = 0  # sequence heads: add a linear "wide" branch on k-mer (k = 1..this) frequencies (0 = off)
    onehot_length: int = 0  # sequence heads: add a linear "wide" branch on the one-hot of the first this-many bases
    norm: str = "pre"  # "pre": x + f(LN(x)); "post": LN(x + f(x)) as BERT/BEACON
    # Hyena filter (HyenaDNA: emb 5, order 64, 2 inner MLPs, Sin frequency 10)
    filter_order: int = 64
    filter_emb_dim: int = 5
    filter_periods: list[int] = field(default_factory=list)  # extra filter features of these periods (3: codons)
    modulation_shift: float = 0.0

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', got {self.norm!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.head in ("classify", "regress", "tag") and self.num_outputs < 1:
            raise ValueError(f"head {self.head!r} needs num_outputs >= 1")
        if self.head == "lm" and self.arch == "beacon":
            raise ValueError("BEACON-B is bidirectional: use head 'mlm', not 'lm'")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not 0 <= self.kmer_features <= KMER_MAX:
            raise ValueError(f"kmer_features must be 0 (off) to {KMER_MAX}, got {self.kmer_features}")
        if not 0 <= self.onehot_length <= self.l_max:
            raise ValueError(f"onehot_length must be 0 (off) to l_max={self.l_max}, got {self.onehot_length}")
        if self.attention and self.attention not in ATTENTION.get(self.arch, ()):
            choices = ATTENTION.get(self.arch, ())
            raise ValueError(f"attention for arch {self.arch!r} must be one of {choices}, got {self.attention!r}")
        if self.head == "mlm" and self.arch != "beacon":
            raise ValueError("masked-LM pretraining is BEACON-B's; HyenaDNA and the transformer use 'lm'")

    @property
    def inner(self) -> int:
        return self.d_inner or 4 * self.d_model

    @property
    def causal(self) -> bool:
        return self.arch != "beacon"

    @property
    def mechanism(self) -> str:
        """The core registry's name of the attention (attention archs only)."""
        return self.attention or self.mechanism_default

    @property
    def mechanism_default(self) -> str:
        """The arch's own attention ("" for Hyena, which has none)."""
        return ATTENTION[self.arch][0] if self.arch in ATTENTION else ""

    @property
    def tokenizer(self) -> Tokenizer:
        return BEACON if self.arch == "beacon" else HYENA

    @property
    def max_bases(self) -> int:
        """Bases per forward pass once special tokens are counted."""
        return self.l_max - self.tokenizer.special_count()

    def to_dict(self) -> dict:
        return asdict(self)


# The published sizes (HyenaDNA Table A.1; BEACON-B's config), and small ones that train on a CPU.
PRESETS: dict[str, GenomicsConfig] = {
    "tiny-1k": GenomicsConfig(arch="hyena", d_model=128, n_layer=2, l_max=1026),
    "tiny-1k-d256": GenomicsConfig(arch="hyena", d_model=256, n_layer=2, l_max=1026),
    "small-32k": GenomicsConfig(arch="hyena", d_model=256, n_layer=4, l_max=32770),
    "medium-160k": GenomicsConfig(arch="hyena", d_model=256, n_layer=8, l_max=160002),
    "large-1m": GenomicsConfig(arch="hyena", d_model=256, n_layer=8, l_max=1000002),
    "beacon-b": GenomicsConfig(
        arch="beacon", norm="post", d_model=768, n_layer=12, num_heads=12, l_max=1026, dropout=0.1, attn_dropout=0.1,
        embed_dropout=0.1, head="mlm",
    ),
    "beacon-b512": GenomicsConfig(
        arch="beacon", norm="post", d_model=768, n_layer=12, num_heads=12, l_max=512, dropout=0.1, attn_dropout=0.1,
        embed_dropout=0.1, head="mlm",
    ),
    "beacon-small": GenomicsConfig(arch="beacon", norm="post", d_model=128, n_layer=4, num_heads=4, l_max=1026,
                                   head="mlm"),
    "beacon-mini": GenomicsConfig(arch="beacon", norm="post", d_model=64, n_layer=2, num_heads=4, l_max=1026,
                                  head="mlm"),
    "transformer-1k": GenomicsConfig(arch="transformer", d_model=128, n_layer=2, num_heads=4, l_max=1026),
    "lightning-1k": GenomicsConfig(arch="lightning", d_model=128, n_layer=2, num_heads=4, l_max=1026),
}  # fmt: skip


def preset(name: str, **changes) -> GenomicsConfig:
    try:
        return replace(PRESETS[name], **changes)
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}") from None


def build_model(config: dict | GenomicsConfig) -> GenomicsModel:
    cfg = config if isinstance(config, GenomicsConfig) else GenomicsConfig(**config)
    return GenomicsModel(cfg)


# ------------------------------------------------------------------------------------------ blocks
class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` per token. Without autograd, long inputs go through in chunks of
    :attr:`chunk_tokens` tokens, so that the 4×-wide hidden activations stay in cache: half the time at
    32k tokens on one CPU thread, the same numbers."""

    chunk_tokens = 2048

    def __init__(self, dim: int, inner: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, inner)
        self.fc2 = nn.Linear(inner, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() or x.shape[:-1].numel() <= self.chunk_tokens:
            return self.dropout(self._hidden(x))
        flat = x.reshape(-1, x.shape[-1])
        out = torch.empty_like(flat)
        for start in range(0, len(flat), self.chunk_tokens):
            out[start : start + self.chunk_tokens] = self._hidden(flat[start : start + self.chunk_tokens])
        return self.dropout(out.view_as(x))

    def _hidden(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class HyenaMixer(nn.Module):
    def __init__(self, cfg: GenomicsConfig):
        super().__init__()
        self.op = sa.HyenaOperator(
            cfg.d_model,
            cfg.l_max,
            filter_order=cfg.filter_order,
            emb_dim=cfg.filter_emb_dim,
            filter_periods=tuple(cfg.filter_periods),
            modulation_shift=cfg.modulation_shift,
        )

    @property
    def out_proj(self) -> nn.Linear:
        return self.op.out_proj

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.op(x, mask)


class AttentionMixer(nn.Module):
    """The core's attention, chosen by name from its registry: causal with RoPE (transformer: softmax or
    sigmoid), bidirectional with symmetric ALiBi (BEACON-B: softmax or sigmoid), or causal decayed linear
    attention whose decay is the position term (lightning, the TransNormer-style blocks)."""

    def __init__(self, cfg: GenomicsConfig):
        super().__init__()
        options = {"attn_dropout": cfg.attn_dropout} if cfg.mechanism == "softmax" else {}
        positional = None if cfg.arch == "lightning" else "rope" if cfg.causal else "alibi"
        self.attn = sa.build(cfg.mechanism, dim=cfg.d_model, num_heads=cfg.num_heads, causal=cfg.causal,
                             positional=positional, **options)  # fmt: skip

    @property
    def out_proj(self) -> nn.Linear:
        return self.attn.out_proj

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.attn(x, key_mask=None if bool(mask.all()) else mask)


class Block(nn.Module):
    """Pre-norm ``x + mixer(LN(x))``, then ``x + MLP(LN(x))``; post-norm ``LN(x + mixer(x))``, then
    ``LN(x + MLP(x))`` (``cfg.norm``)."""

    def __init__(self, cfg: GenomicsConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.mixer = HyenaMixer(cfg) if cfg.arch == "hyena" else AttentionMixer(cfg)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.mlp = Mlp(cfg.d_model, cfg.inner, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)
        self.post = cfg.norm == "post"

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.post:
            x = self.norm1(x + self.dropout(self.mixer(x, mask)))
            return self.norm2(x + self.mlp(x))
        x = x + self.dropout(self.mixer(self.norm1(x), mask))
        return x + self.mlp(self.norm2(x))


# ------------------------------------------------------------------------------------------ model
class GenomicsModel(nn.Module):
    def __init__(self, cfg: GenomicsConfig):
        super().__init__()
        self.config = cfg
        self.tokenizer = cfg.tokenizer
        vocab_rows = -(-self.tokenizer.vocab_size // 8) * 8  # padded to a multiple of 8, as published
        self.embedding = nn.Embedding(vocab_rows, cfg.d_model)
        self.embed_dropout = nn.Dropout(cfg.embed_dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.LayerNorm(cfg.d_model)
        if cfg.head == "mlm":
            self.transform = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.GELU(), nn.LayerNorm(cfg.d_model))
            self.lm_bias = nn.Parameter(torch.zeros(vocab_rows))
        if cfg.arch == "beacon" and cfg.head in ("classify", "regress"):
            self.pooler = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.Tanh())
        if cfg.head in ("classify", "regress", "tag"):
            self.head_dropout = nn.Dropout(max(cfg.dropout, 0.1))
            self.out = nn.Linear(cfg.d_model, cfg.num_outputs)
        if cfg.head in ("classify", "regress"):  # no parameters unless kmer_features / onehot_length
            self.wide = WideBranches(self.tokenizer.base_ids, cfg.num_outputs, cfg.kmer_features, cfg.onehot_length)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by depth
            if name.endswith(("out_proj.weight", "fc2.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))
        if hasattr(self, "wide"):  # silent, as a logistic regression from zero
            self.wide.silence()

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    # -------------------------------------------------------------------------------- shared calls
    def hidden(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """``ids [b, L]`` (``mask`` True on real tokens) → final hidden states ``[b, L, d]``."""
        if ids.dim() != 2:
            raise ValueError(f"ids must be [batch, length], got shape {tuple(ids.shape)}")
        if ids.shape[1] > self.config.l_max:
            raise ValueError(f"{ids.shape[1]} tokens exceed the model's context l_max={self.config.l_max}")
        if mask is None:
            mask = ids != self.tokenizer.pad_id
        x = self.embedding(ids)
        post = self.config.norm == "post"
        x = self.embed_dropout(self.norm(x) if post else x)  # post-norm: BERT's embedding LayerNorm
        for block in self.blocks:
            x = block(x, mask)
        return x if post else self.norm(x)

    def pooled(self, ids: Tensor, mask: Tensor | None = None, hidden: Tensor | None = None) -> Tensor:
        """One vector per sequence: BEACON-B's pooler on ``<cls>``, else the config's pooling over real tokens."""
        mask = ids != self.tokenizer.pad_id if mask is None else mask
        h = self.hidden(ids, mask) if hidden is None else hidden
        if hasattr(self, "pooler"):
            return self.pooler(h[:, 0])
        if self.config.pooling == "last":  # causal models pad on the left: the last position saw everything
            return h[:, -1]
        if self.config.pooling == "max":  # each feature's strongest position: a motif found anywhere
            return h.masked_fill(~mask.unsqueeze(-1), torch.finfo(h.dtype).min).amax(1)
        return mean_pool(h, mask)

    def token_logits(self, hidden: Tensor) -> Tensor:
        """Vocabulary logits from hidden states (the tied LM / MLM head)."""
        if self.config.head == "mlm":
            return F.linear(self.transform(hidden), self.embedding.weight, self.lm_bias)
        return F.linear(hidden, self.embedding.weight)

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        mask = ids != self.tokenizer.pad_id if mask is None else mask
        h = self.hidden(ids, mask)
        head = self.config.head
        if head in ("lm", "mlm"):
            return self.token_logits(h)
        if head == "tag":
            return self.out(self.head_dropout(h))
        out = self.out(self.head_dropout(self.pooled(ids, mask, hidden=h)))
        return out + self.wide(ids)  # wide & deep: the linear baselines' logits added

    # -------------------------------------------------------------------------------- heads
    def with_head(
        self, head: str, num_outputs: int = 0, labels: list[str] | None = None, task: str = "", **changes
    ) -> GenomicsModel:
        """A copy of this backbone with a fresh ``head`` (fine-tuning from a pretrained model)."""
        cfg = replace(self.config, head=head, num_outputs=num_outputs, labels=list(labels or []), task=task, **changes)
        model = GenomicsModel(cfg)
        backbone = {k: v for k, v in self.state_dict().items() if not k.startswith(_HEAD_PREFIXES)}
        missing, _ = model.load_state_dict(backbone, strict=False)
        if any(not k.startswith(_HEAD_PREFIXES) for k in missing):
            raise ValueError(f"backbone weights missing: {[k for k in missing if not k.startswith(_HEAD_PREFIXES)]}")
        return model

    def lm_loss(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Next-token cross-entropy over real target tokens (causal models)."""
        logits = self.token_logits(self.hidden(ids, mask))[:, :-1]
        targets = ids[:, 1:].masked_fill(~mask[:, 1:] | ~mask[:, :-1], -100)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))

    @torch.no_grad()
    def log_likelihood(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Per-token ``log p(x_t | x_<t)`` ``[b, L-1]`` (0 where the target is padding)."""
        logits = self.token_logits(self.hidden(ids, mask))[:, :-1].float()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        return logp * (mask[:, 1:] & mask[:, :-1])


_HEAD_PREFIXES = ("out.", "wide.", "pooler.", "head_dropout.", "transform.", "lm_bias")


def mean_pool(h: Tensor, mask: Tensor) -> Tensor:
    weights = mask.unsqueeze(-1).to(h.dtype)
    return (h * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def mask_tokens(
    ids: Tensor, mask: Tensor, tokenizer: Tokenizer, *, probability: float = 0.15, generator=None
) -> tuple[Tensor, Tensor]:
    """BERT masking: pick ``probability`` of the bases; of those 80% → ``mask``, 10% → a random base, 10% kept.
    Returns ``(inputs, targets)`` with targets ``-100`` where nothing is predicted."""
    bases = torch.zeros_like(mask)
    for i in tokenizer.base_ids:
        bases |= ids == i
    bases &= mask
    chosen = (torch.rand(ids.shape, generator=generator) < probability) & bases
    targets = ids.masked_fill(~chosen, -100)
    roll = torch.rand(ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (roll < 0.8)] = tokenizer.mask_id
    random_base = torch.tensor(tokenizer.base_ids[:4])[torch.randint(0, 4, ids.shape, generator=generator)]
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[swap] = random_base[swap]
    return inputs, targets
