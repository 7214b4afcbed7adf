"""The simple models every genomics table is measured against.

* :func:`onehot_logistic`: logistic regression on the one-hot encoding of each position (fixed-length
  sequences, e.g. UCI splice junctions) — the classic strong baseline for aligned sites.
* :func:`kmer_tfidf_logistic`: logistic regression on tf-idf weighted k-mer counts (k = 1..5 by
  default) — for variable-length sequences such as ncRNA families.
* :class:`MarkovModel`: an order-k Markov chain with add-α smoothing; :func:`best_markov` fits
  k = 1..8 on the language model's training sequences and scores a held-out sequence in bits per base.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# the logistic regressions' inverse L2 strengths (also those of the models' wide branches, services.genomics.wide)
KMER_C = 10.0
ONEHOT_C = 1.0
_INDEX = {c: i for i, c in enumerate("ACGTN")}
_BYTE_CODES = np.full(256, 4, dtype=np.int64)  # normalized input: anything but A/C/G/T is N
for _base, _code in _INDEX.items():
    _BYTE_CODES[ord(_base)] = _code


def onehot(sequences: Sequence[str]) -> np.ndarray:
    """``[n, length * 5]`` one-hot of equal-length sequences over ``A C G T N``."""
    lengths = {len(s) for s in sequences}
    if len(lengths) != 1:
        raise ValueError(f"position-wise one-hot needs equal lengths, got {sorted(lengths)[:5]}")
    length = lengths.pop()
    codes = np.array([[_INDEX[c] for c in s] for s in sequences], dtype=np.int64)
    out = np.zeros((len(sequences), length, 5), dtype=np.float32)
    np.put_along_axis(out, codes[..., None], 1.0, axis=2)
    return out.reshape(len(sequences), -1)


def logistic(c: float, seed: int = 0):
    """The baselines' L2-regularised logistic regression (inverse strength ``c``), unfitted."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=5000, random_state=seed)


def onehot_logistic(
    train: Sequence[str], labels: Sequence[int], test: Sequence[str], *, c: float = ONEHOT_C, seed: int = 0
) -> np.ndarray:
    """Class probabilities for ``test`` from a position-wise one-hot logistic regression."""
    model = logistic(c, seed)
    model.fit(onehot(train), np.asarray(labels))
    return _full_proba(model, onehot(test))


def kmer_tfidf_logistic(
    train: Sequence[str],
    labels: Sequence[int],
    test: Sequence[str],
    *,
    k: tuple[int, int] = (1, 5),
    c: float = KMER_C,
    seed: int = 0,
) -> np.ndarray:
    """Class probabilities for ``test`` from tf-idf k-mer (``k[0]..k[1]``) logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=k, lowercase=False, sublinear_tf=True)
    features = vectorizer.fit_transform(train)
    model = logistic(c, seed)
    model.fit(features, np.asarray(labels))
    return _full_proba(model, vectorizer.transform(test))


def _full_proba(model, features) -> np.ndarray:
    """``predict_proba`` with a column for every class index up to the largest seen."""
    proba = model.predict_proba(features)
    classes = model.classes_.astype(int)
    out = np.zeros((proba.shape[0], int(classes.max()) + 1))
    out[:, classes] = proba
    return out


@dataclass
class MarkovModel:
    """Order-``k`` Markov chain over ``A C G T`` (``N`` breaks contexts) with add-``alpha`` smoothing."""

    k: int
    alpha: float = 0.5

    def fit(self, sequences: Sequence[str]) -> MarkovModel:
        self.counts = np.zeros((4**self.k, 4))
        for seq in sequences:
            codes = _codes(seq)
            positions = _scorable(codes, self.k)
            np.add.at(self.counts, (_context(codes, positions, self.k), codes[positions]), 1)
        return self

    def bits_per_base(self, sequence: str, positions: np.ndarray | None = None) -> float:
        """Mean ``-log2 p`` over ``positions`` (default: every base with a full ``k``-base context)."""
        codes = _codes(sequence)
        positions = _scorable(codes, self.k) if positions is None else positions
        rows = self.counts[_context(codes, positions, self.k)] + self.alpha
        p = rows[np.arange(len(positions)), codes[positions]] / rows.sum(1)
        return float(-np.log2(p).mean())


def _codes(sequence: str) -> np.ndarray:
    return _BYTE_CODES[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]


def _scorable(codes: np.ndarray, k: int) -> np.ndarray:
    """Positions ``t >= k`` whose base and ``k`` preceding bases are all A/C/G/T."""
    if len(codes) <= k:
        return np.zeros(0, dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(codes, k + 1)
    return np.flatnonzero((windows < 4).all(1)) + k


def _context(codes: np.ndarray, positions: np.ndarray, k: int) -> np.ndarray:
    index = np.zeros(len(positions), dtype=np.int64)
    for j in range(k, 0, -1):
        index = index * 4 + codes[positions - j]
    return index


def markov_table(
    train: Sequence[str], test: str, orders: Sequence[int] = range(1, 9), alphas: Sequence[float] = (0.1, 0.5, 1.0)
) -> list[dict[str, float]]:
    """Bits per base on ``test`` for each order ``k`` with its best smoothing ``alpha``. Every order scores
    the same bases (those the highest order can score), so the rows compare."""
    positions = _scorable(_codes(test), max(orders))
    rows = []
    for k in orders:
        scores = {alpha: MarkovModel(k, alpha).fit(train).bits_per_base(test, positions) for alpha in alphas}
        alpha = min(scores, key=scores.get)
        rows.append({"k": k, "alpha": alpha, "bits_per_base": scores[alpha], "bases": len(positions)})
    return rows


STOPS = ("TAA", "TAG", "TGA")


def orf_mask(sequence: str, min_codons: int = 100) -> np.ndarray:
    """The classic non-learned coding predictor: 1 on every base of an open reading frame (ATG to the next
    in-frame stop, stop included) of at least ``min_codons`` codons, in any of the six frames."""
    from .tokenizer import reverse_complement

    n = len(sequence)
    mask = np.zeros(n, dtype=np.uint8)
    for strand, seq in ((1, sequence), (-1, reverse_complement(sequence))):
        for frame in range(3):
            start = None
            for i in range(frame, n - 2, 3):
                codon = seq[i : i + 3]
                if start is None and codon == "ATG":
                    start = i
                elif start is not None and codon in STOPS:
                    if (i + 3 - start) // 3 >= min_codons:
                        a, b = (start, i + 3) if strand == 1 else (n - i - 3, n - start)
                        mask[a:b] = 1
                    start = None
    return mask
