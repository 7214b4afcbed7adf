"""Interaction sequences for next-item recommendation: loaders, the leave-one-out protocol, the item
transition graph and a synthetic Markov-chain data set.

Loaders return :class:`Interactions` (one chronological item list per user, external ids kept);
:func:`index_items` maps external item ids to ``1..num_items`` (0 is padding). Formats:

* S3-Rec: ``user item item ...`` per line, already in time order (Amazon Toys/Sports/Beauty files);
* MovieLens: ``u.data`` (``user<TAB>item<TAB>rating<TAB>timestamp``) and ``ratings.dat``
  (``user::item::rating::timestamp``), ordered by timestamp;
* generic CSV with a header naming the user, item and timestamp columns.

Malformed lines raise ``ValueError`` with the file, line number and what was expected.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

PAD = 0


@dataclass
class Interactions:
    """Chronological item sequences per user (external ids)."""

    sequences: dict[str, list[str]] = field(default_factory=dict)

    @property
    def num_interactions(self) -> int:
        return sum(len(s) for s in self.sequences.values())


def read_s3rec(path: str | Path) -> Interactions:
    out = Interactions()
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise ValueError(f"{path}:{line_no}: expected 'user item item ...', got {line.strip()!r}")
            out.sequences[parts[0]] = parts[1:]
    return out


def _by_time(rows: list[tuple[str, str, float]]) -> Interactions:
    rows.sort(key=lambda r: (r[0], r[2]))
    out = Interactions()
    for user, item, _ in rows:
        out.sequences.setdefault(user, []).append(item)
    return out


def read_movielens(path: str | Path) -> Interactions:
    """``u.data`` (tab separated) or ``ratings.dat`` (``::`` separated), chronological per user."""
    rows = []
    with open(path, encoding="latin-1") as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split("::") if "::" in line else line.split("\t")
            if len(parts) < 4:
                raise ValueError(f"{path}:{line_no}: expected user, item, rating, timestamp; got {line!r}")
            try:
                rows.append((parts[0], parts[1], float(parts[3])))
            except ValueError:
                raise ValueError(f"{path}:{line_no}: timestamp {parts[3]!r} is not a number") from None
    return _by_time(rows)


def read_interactions_csv(
    path: str | Path, user: str = "user", item: str = "item", timestamp: str = "timestamp"
) -> Interactions:
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {user, item, timestamp} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)} (header: {reader.fieldnames})")
        for line_no, row in enumerate(reader, 2):
            try:
                rows.append((row[user], row[item], float(row[timestamp])))
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{line_no}: {timestamp} {row.get(timestamp)!r} is not a number") from None
    return _by_time(rows)


READERS = {"s3rec": read_s3rec, "movielens": read_movielens, "csv": read_interactions_csv}


def read(path: str | Path, fmt: str) -> Interactions:
    try:
        return READERS[fmt](path)
    except KeyError:
        raise ValueError(f"format must be one of {sorted(READERS)}, got {fmt!r}") from None


def k_core(data: Interactions, k: int = 5) -> Interactions:
    """Repeatedly drop users and items with fewer than ``k`` interactions."""
    seqs = {u: list(s) for u, s in data.sequences.items()}
    while True:
        counts = Counter(i for s in seqs.values() for i in s)
        kept = {u: [i for i in s if counts[i] >= k] for u, s in seqs.items()}
        kept = {u: s for u, s in kept.items() if len(s) >= k}
        if kept == seqs:
            return Interactions(kept)
        seqs = kept


@dataclass
class Indexed:
    """Sequences of item indices ``1..num_items`` (0 = padding) and the id mapping."""

    users: list[str]
    sequences: list[list[int]]
    item_ids: list[str]  # item_ids[i - 1] is the external id of index i

    @property
    def num_items(self) -> int:
        return len(self.item_ids)


def index_items(data: Interactions) -> Indexed:
    item_ids: dict[str, int] = {}
    for seq in data.sequences.values():
        for item in seq:
            item_ids.setdefault(item, len(item_ids) + 1)
    users = list(data.sequences)
    return Indexed(users, [[item_ids[i] for i in data.sequences[u]] for u in users], list(item_ids))


@dataclass
class Split:
    """Leave-one-out: train = all but the last two items, validation target = second to last, test
    target = last. Users with fewer than 3 items are kept for training only."""

    train: list[list[int]]
    valid: list[tuple[list[int], int]]  # (history, target)
    test: list[tuple[list[int], int]]


def leave_one_out(sequences: list[list[int]]) -> Split:
    train, valid, test = [], [], []
    for seq in sequences:
        if len(seq) < 3:
            train.append(seq)
            continue
        train.append(seq[:-2])
        valid.append((seq[:-2], seq[-2]))
        test.append((seq[:-1], seq[-1]))
    return Split(train, valid, test)


def transition_counts(train: list[list[int]], num_items: int, max_len: int | None = None) -> torch.Tensor:
    """Sparse ``[num_items + 1, num_items + 1]`` counts of item j right after item i in training sequences
    (each truncated to its last ``max_len`` items, as the model sees them)."""
    rows, cols = [], []
    for seq in train:
        seq = seq[-max_len:] if max_len else seq
        rows.extend(seq[:-1])
        cols.extend(seq[1:])
    index = torch.tensor([rows, cols], dtype=torch.long) if rows else torch.zeros(2, 0, dtype=torch.long)
    values = torch.ones(index.shape[1])
    return torch.sparse_coo_tensor(index, values, (num_items + 1, num_items + 1), check_invariants=True).coalesce()


def pad_left(sequences: list[list[int]], max_len: int) -> torch.Tensor:
    """The last ``max_len`` items of each sequence, left-padded with 0: ``[batch, max_len]``."""
    out = torch.zeros(len(sequences), max_len, dtype=torch.long)
    for row, seq in enumerate(sequences):
        tail = seq[-max_len:]
        if tail:
            out[row, max_len - len(tail) :] = torch.tensor(tail)
    return out


def markov_sequences(
    num_users: int, num_items: int, *, length: tuple[int, int] = (6, 20), branching: int = 3, seed: int = 0
) -> Interactions:
    """Synthetic sequences where the next item is predictable: every item has ``branching`` successors
    (one of them 70% likely), so a model that learns the transitions beats popularity by far."""
    rng = np.random.default_rng(seed)
    successors = rng.integers(1, num_items + 1, size=(num_items + 1, branching))
    probs = np.full(branching, 0.3 / (branching - 1)) if branching > 1 else np.ones(1)
    probs[0] = 0.7 if branching > 1 else 1.0
    out = Interactions()
    for user in range(num_users):
        n = int(rng.integers(length[0], length[1] + 1))
        item = int(rng.integers(1, num_items + 1))
        seq = [item]
        for _ in range(n - 1):
            item = int(successors[item, rng.choice(branching, p=probs)])
            seq.append(item)
        out.sequences[f"u{user}"] = [str(i) for i in seq]
    return out
