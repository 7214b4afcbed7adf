"""A model's linear "wide" branches (:class:`WideBranches`) and the features they read from token ids: those
of the linear baselines (:mod:`.baselines`), the tf-idf k-mer frequencies
(:func:`.baselines.kmer_tfidf_logistic`) and the position-wise one-hot (:func:`.baselines.onehot_logistic`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _codes(ids: Tensor, base_ids: list[int]) -> Tensor:
    """Each token's index in ``base_ids`` (-1 for any other token: padding, special tokens)."""
    codes = torch.full_like(ids, -1)
    for code, token in enumerate(base_ids):
        codes = codes.masked_fill(ids == token, code)
    return codes


def kmer_tf(ids: Tensor, base_ids: list[int], k_max: int) -> Tensor:
    """``ids [b, L]`` → ``[b, 4 + 16 + ... + 4^k_max]``: for each k-mer over A/C/G/T (``base_ids`` in that
    order; windows with N, padding or special tokens are skipped) its sublinear term frequency
    ``1 + log(count)``, 0 when absent."""
    codes = _codes(ids, base_ids)
    blocks = []
    for k in range(1, k_max + 1):
        counts = ids.new_zeros(ids.shape[0], 4**k, dtype=torch.float32)
        if ids.shape[1] >= k:
            windows = codes.unfold(1, k, 1)  # [b, L-k+1, k]
            valid = (windows >= 0).all(-1)
            index = (windows.clamp_min(0) * (4 ** torch.arange(k - 1, -1, -1, device=ids.device))).sum(-1)
            counts.scatter_add_(1, index, valid.float())
        blocks.append(torch.where(counts > 0, 1 + torch.log(counts.clamp_min(1)), counts))
    return torch.cat(blocks, 1)


def smooth_idf(tf: Tensor) -> Tensor:
    """The idf of each column of the training sequences' ``tf`` rows, smoothed as scikit-learn's
    ``TfidfVectorizer``: ``ln((1 + n) / (1 + df)) + 1`` with ``df`` the sequences holding the k-mer."""
    df = (tf > 0).sum(0).to(torch.float32)
    return torch.log((1 + tf.shape[0]) / (1 + df)) + 1


def tfidf(tf: Tensor, idf: Tensor | None = None) -> Tensor:
    """``tf`` weighted by ``idf`` (none: 1) and L2-normalised: the features of the k-mer tf-idf baseline."""
    return F.normalize(tf if idf is None else tf * idf.to(tf.dtype), dim=1)


def kmer_frequencies(ids: Tensor, base_ids: list[int], k_max: int, idf: Tensor | None = None) -> Tensor:
    """:func:`tfidf` of :func:`kmer_tf`."""
    return tfidf(kmer_tf(ids, base_ids, k_max), idf)


def position_onehot(ids: Tensor, base_ids: list[int], length: int) -> Tensor:
    """``ids [b, L]`` → ``[b, length * 5]``: base ``i`` of each sequence (counted from its first base, on
    either padding side) one-hot over A C G T N (``base_ids`` in that order), position-major as
    :func:`.baselines.onehot`. Bases past ``length`` are not read; positions a shorter sequence lacks are 0."""
    codes = _codes(ids, base_ids)
    real = codes >= 0
    position = real.cumsum(1) - 1
    keep = real & (position < length)
    out = ids.new_zeros(ids.shape[0], length * len(base_ids), dtype=torch.float32)
    index = position.clamp(0, length - 1) * len(base_ids) + codes.clamp_min(0)
    return out.scatter_add_(1, index, keep.float())


class WideBranches(nn.Module):
    """The linear "wide" branches of a sequence head (Cheng et al.'s wide & deep): logits of the features
    that a linear baseline reads, summed with the deep head's. ``kmer`` reads the tf-idf k-mer (1..
    ``kmer_features``) frequencies, its idf a buffer fitted with the branch (ones until then); ``onehot`` the
    one-hot of the first ``onehot_length`` bases. Each starts silent (zero weights); with neither it adds 0."""

    def __init__(self, base_ids: list[int], num_outputs: int, kmer_features: int = 0, onehot_length: int = 0):
        super().__init__()
        self.base_ids, self.kmer_features, self.onehot_length = list(base_ids), kmer_features, onehot_length
        if kmer_features:
            kmers = sum(4**k for k in range(1, kmer_features + 1))
            self.kmer = nn.Linear(kmers, num_outputs)
            self.register_buffer("kmer_idf", torch.ones(kmers))
        if onehot_length:
            self.onehot = nn.Linear(onehot_length * len(base_ids), num_outputs)
        self.silence()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name in ("kmer", "onehot") if hasattr(self, name))

    def branch(self, name: str) -> nn.Linear:
        return getattr(self, name)

    @torch.no_grad()
    def silence(self) -> None:
        for name in self.names:
            self.branch(name).weight.zero_()
            self.branch(name).bias.zero_()

    def features(self, name: str, ids: Tensor, *, fit_idf: bool = False) -> Tensor:
        """What branch ``name`` reads from ``ids``; ``fit_idf``: the k-mer idf fitted on these sequences first."""
        if name == "onehot":
            return position_onehot(ids, self.base_ids, self.onehot_length)
        tf = kmer_tf(ids, self.base_ids[:4], self.kmer_features)
        if fit_idf:
            self.kmer_idf.copy_(smooth_idf(tf))
        return tfidf(tf, self.kmer_idf)

    def forward(self, ids: Tensor) -> Tensor | float:
        out: Tensor | float = 0.0
        for name in self.names:
            branch = self.branch(name)
            out = out + branch(self.features(name, ids).to(branch.weight.dtype))
        return out
