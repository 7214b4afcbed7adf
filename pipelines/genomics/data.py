"""Where the genomics pipelines' data comes from: the shipped files (data/genomics/README.md), generated
sequences for the tests, and the classification data sets by name with their splits.

Splits: UCI splice and promoters 80/20 stratified (``split_seed``); nRC the published train/test split;
a CSV folder its own ``train.csv`` / ``test.csv``; cross-validation deals every record into stratified
folds and holds one out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.genomics import sequences as seqs

DATA_HOME = Path(__file__).resolve().parents[2] / "data" / "genomics"  # shipped copies
SPLICE = DATA_HOME / "splice.data.gz"
LAMBDA = DATA_HOME / "lambda_J02459.fasta.gz"
CHLOROPLAST = DATA_HOME / "NC_000932.gb.gz"
PROMOTERS = DATA_HOME / "promoters.data.gz"

Records = tuple[list[seqs.Record], list[seqs.Record]]


@dataclass
class Example:
    sequence: str
    label: int


def classification_records(source: str, data: str | None, *, seed: int = 0, synthetic_size: int = 1200) -> Records:
    """``(train, test)`` records of the classification data set ``source`` (a key of :data:`SOURCES`)."""
    try:
        read = SOURCES[source]
    except KeyError:
        raise ValueError(f"unknown classification data set {source!r}; known: {', '.join(SOURCES)}") from None
    return read(data, seed, synthetic_size)


def fold_records(records: list[seqs.Record], folds: int, fold: int, seed: int) -> Records:
    """Cross-validation: ``(train, test)`` with stratified fold ``fold`` of ``folds`` held out."""
    held = seqs.stratified_folds([r.label for r in records], k=folds, seed=seed)[fold]
    out = set(held.tolist())
    return [r for i, r in enumerate(records) if i not in out], [records[i] for i in held]


def synthetic_genome(length: int, *, seed: int = 0, order: int = 3) -> str:
    """A sequence from a random order-``order`` Markov chain with peaked transitions (learnable, ~1.3 bits)."""
    rng = np.random.default_rng(seed)
    table = rng.dirichlet(np.full(4, 0.3), size=4**order)
    out = list(rng.integers(0, 4, size=order))
    for _ in range(length - order):
        context = 0
        for c in out[-order:]:
            context = context * 4 + int(c)
        out.append(int(rng.choice(4, p=table[context])))
    return "".join("ACGT"[c] for c in out)


def synthetic_splice(n: int, *, seed: int = 0, length: int = 60) -> list[Example]:
    """UCI-like 60-mers in 3 classes: a donor consensus ``AG|GTRAGT`` or an acceptor ``(Y)10 NCAG|G`` at the
    centre, or neither (with decoy GT/AG dinucleotides elsewhere)."""
    rng = np.random.default_rng(seed)
    out = []
    centre = length // 2
    for i in range(n):
        label = i % 3
        s = list(rng.choice(list("ACGT"), size=length))
        if label == 0:
            motif = "AGGTAAGT" if rng.random() < 0.5 else "AGGTGAGT"
            s[centre - 2 : centre + 6] = motif
        elif label == 1:
            s[centre - 14 : centre - 4] = rng.choice(list("CT"), size=10)
            s[centre - 3 : centre + 1] = "CAGG"
        else:
            d = int(rng.integers(0, length - 2))
            s[d : d + 2] = "GT" if rng.random() < 0.5 else "AG"
        out.append(Example("".join(s), label))
    order = rng.permutation(n)
    return [out[i] for i in order]


# ------------------------------------------------------------------------------ the data sets by name
def _synthetic_splice(data: str | None, seed: int, size: int) -> Records:
    records = [seqs.Record(f"s{i}", e.sequence, label=str(e.label)) for i, e in
               enumerate(synthetic_splice(size, seed=seed))]  # fmt: skip
    return _split(records, seed)


def _uci_splice(data: str | None, seed: int, size: int) -> Records:
    return _split(seqs.read_uci_splice(data or SPLICE), seed)


def _uci_promoters(data: str | None, seed: int, size: int) -> Records:
    return _split(seqs.read_uci_promoters(data or PROMOTERS), seed)


def _nrc(data: str | None, seed: int, size: int) -> Records:
    if not data:
        raise ValueError("task 'nrc' needs --data: a folder with nRC_train.fasta and nRC_test.fasta")
    root = Path(data)
    return seqs.read_nrc_fasta(root / "nRC_train.fasta"), seqs.read_nrc_fasta(root / "nRC_test.fasta")


def _csv(data: str | None, seed: int, size: int) -> Records:
    if not data:
        raise ValueError("task 'csv' needs --data: train.csv + test.csv (seq,label), one CSV, or a "
                         "GenomicBenchmarks folder")  # fmt: skip
    root = Path(data)
    if root.is_dir() and (root / "train.csv").exists():
        return seqs.read_labelled_csv(root / "train.csv"), seqs.read_labelled_csv(root / "test.csv")
    if root.is_dir():
        folders = seqs.read_genomic_benchmarks_folder(root)
        return folders["train"], folders["test"]
    return _split(seqs.read_labelled_csv(root), seed)


def _split(records: list[seqs.Record], seed: int) -> Records:
    train, test = seqs.stratified_split([r.label for r in records], test_fraction=0.2, seed=seed)
    return [records[i] for i in train], [records[i] for i in test]


# name -> (data path or None, split seed, generated size) -> (train, test); a classification preset names one
SOURCES: dict[str, Callable[[str | None, int, int], Records]] = {
    "synthetic-splice": _synthetic_splice,
    "splice": _uci_splice,
    "promoters": _uci_promoters,
    "nrc": _nrc,
    "csv": _csv,
}
