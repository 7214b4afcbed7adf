"""Click-through-rate data: a feature schema with vocabularies (or hashing) and an out-of-vocabulary
bucket, loaders for Criteo, Avazu and MovieLens-as-CTR, and a synthetic generator whose Bayes-optimal
AUC is known.

Rows are dicts of raw values. A :class:`Schema` turns them into tensors: categorical values become
indices (0 = out of vocabulary, also for missing values), dense values ``log1p`` (when non-negative)
then standardised, missing dense values 0 after standardisation (the training mean).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

OOV = 0


@dataclass
class Schema:
    categorical: list[str]
    dense: list[str]
    vocab: dict[str, dict[str, int]] = field(default_factory=dict)  # field -> value -> 1..V
    hash_buckets: int = 0  # > 0: hash categorical values into this many buckets instead of a vocabulary
    dense_log: dict[str, bool] = field(default_factory=dict)
    dense_mean: dict[str, float] = field(default_factory=dict)
    dense_std: dict[str, float] = field(default_factory=dict)

    @property
    def cardinalities(self) -> list[int]:
        """Embedding rows per categorical field (OOV included)."""
        if self.hash_buckets:
            return [self.hash_buckets + 1] * len(self.categorical)
        return [len(self.vocab[f]) + 1 for f in self.categorical]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Schema:
        return cls(**data)

    def index(self, name: str, value: object) -> int:
        if value is None or value == "":
            return OOV
        text = str(value)
        if self.hash_buckets:
            digest = hashlib.blake2b(f"{name}={text}".encode(), digest_size=8).digest()
            return 1 + int.from_bytes(digest, "little") % self.hash_buckets
        return self.vocab[name].get(text, OOV)

    def dense_value(self, name: str, value: object) -> float:
        if value is None or value == "":
            return 0.0
        x = float(value)
        if not math.isfinite(x):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.dense_log.get(name):
            x = math.log1p(max(x, 0.0))
        return (x - self.dense_mean.get(name, 0.0)) / (self.dense_std.get(name, 1.0) or 1.0)

    def encode(self, rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(categorical [N, F] long, dense [N, D] float)``."""
        cat = torch.tensor([[self.index(f, r.get(f)) for f in self.categorical] for r in rows], dtype=torch.long)
        dense = torch.tensor([[self.dense_value(f, r.get(f)) for f in self.dense] for r in rows], dtype=torch.float32)
        return cat.view(len(rows), len(self.categorical)), dense.view(len(rows), len(self.dense))


def fit_schema(
    rows: list[dict], categorical: list[str], dense: list[str], *, min_count: int = 1, hash_buckets: int = 0
) -> Schema:
    """Vocabularies of values seen at least ``min_count`` times and dense statistics, from training rows."""
    schema = Schema(list(categorical), list(dense), hash_buckets=hash_buckets)
    if not hash_buckets:
        for name in categorical:
            counts: dict[str, int] = {}
            for r in rows:
                value = r.get(name)
                if value not in (None, ""):
                    counts[str(value)] = counts.get(str(value), 0) + 1
            kept = sorted(v for v, c in counts.items() if c >= min_count)
            schema.vocab[name] = {v: i + 1 for i, v in enumerate(kept)}
    for name in dense:
        values = np.array([float(r[name]) for r in rows if r.get(name) not in (None, "")], dtype=np.float64)
        log = bool(values.size) and values.min() >= 0 and values.max() > 100
        if log:
            values = np.log1p(values)
        schema.dense_log[name] = log
        schema.dense_mean[name] = float(values.mean()) if values.size else 0.0
        schema.dense_std[name] = float(values.std()) if values.size and values.std() > 0 else 1.0
    return schema


# ----------------------------------------------------------------------------------------- loaders
CRITEO_DENSE = [f"I{i}" for i in range(1, 14)]
CRITEO_CATEGORICAL = [f"C{i}" for i in range(1, 27)]


@dataclass
class CTRTable:
    rows: list[dict]
    labels: np.ndarray
    categorical: list[str]
    dense: list[str]


def read_criteo(path: str | Path) -> CTRTable:
    """Criteo display ads: ``label, I1..I13, C1..C26``, tab or comma separated, with or without header."""
    names = ["label", *CRITEO_DENSE, *CRITEO_CATEGORICAL]
    rows, labels = [], []
    with open(path, newline="") as f:
        first = f.readline()
        delimiter = "\t" if "\t" in first else ","
        has_header = first.strip().split(delimiter)[0] == "label"
        if not has_header:
            f.seek(0)
        for line_no, parts in enumerate(csv.reader(f, delimiter=delimiter), 2 if has_header else 1):
            if not parts:
                continue
            if len(parts) != len(names):
                raise ValueError(
                    f"{path}:{line_no}: expected {len(names)} fields (label, I1-I13, C1-C26), got {len(parts)}"
                )
            row = dict(zip(names, parts))
            if row["label"] not in ("0", "1"):
                raise ValueError(f"{path}:{line_no}: label must be 0 or 1, got {row['label']!r}")
            labels.append(int(row.pop("label")))
            rows.append(row)
    return CTRTable(rows, np.array(labels), CRITEO_CATEGORICAL, CRITEO_DENSE)


def read_avazu(path: str | Path) -> CTRTable:
    """Avazu mobile ads CSV with a header (``id, click, hour, C1, ...``); ``hour`` (YYMMDDHH) becomes
    hour-of-day and weekday fields; the row id is dropped."""
    rows, labels = [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "click" not in reader.fieldnames or "hour" not in reader.fieldnames:
            raise ValueError(f"{path}: expected an Avazu header with 'click' and 'hour', got {reader.fieldnames}")
        fields = [c for c in reader.fieldnames if c not in ("id", "click", "hour")]
        for line_no, row in enumerate(reader, 2):
            try:
                stamp = dt.datetime.strptime(row["hour"], "%y%m%d%H")
                label = int(row["click"])
            except (TypeError, ValueError):
                raise ValueError(
                    f"{path}:{line_no}: bad click {row.get('click')!r} or hour {row.get('hour')!r}"
                ) from None
            out = {c: row[c] for c in fields}
            out["hour_of_day"], out["weekday"] = str(stamp.hour), str(stamp.weekday())
            rows.append(out)
            labels.append(label)
    return CTRTable(rows, np.array(labels), [*fields, "hour_of_day", "weekday"], [])


ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
JOINED_COLUMNS = ("user_id", "movie_id", "rating", "timestamp", "title", "genres", "gender", "age", "occupation", "zip")


def read_movielens_ctr(path: str | Path) -> CTRTable:
    """MovieLens ratings joined with user and movie fields as a CTR task: click = rating >= 4; fields
    user, movie, gender, age, occupation, zip (3 digits), first genre, year, hour and weekday.

    ``path`` is a MovieLens distribution as it comes (a folder, or any file in it): ML-100k's
    ``u.data`` / ``u.user`` / ``u.item`` or ML-1M's ``ratings.dat`` / ``users.dat`` / ``movies.dat``;
    or a CSV already joined, with the columns of :data:`JOINED_COLUMNS`."""
    rows, labels = [], []
    for where, row in _movielens_records(Path(path)):
        try:
            rating, stamp = float(row["rating"]), dt.datetime.fromtimestamp(int(row["timestamp"]), dt.UTC)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: bad rating or timestamp") from None
        year = re.search(r"\((\d{4})\)\s*$", row["title"] or "")
        rows.append({
            "user": row["user_id"], "movie": row["movie_id"], "gender": row["gender"], "age": row["age"],
            "occupation": row["occupation"], "zip": (row["zip"] or "")[:3],
            "genre": (row["genres"] or "").split("|")[0], "year": year.group(1) if year else "",
            "hour": str(stamp.hour), "weekday": str(stamp.weekday()),
        })  # fmt: skip
        labels.append(int(rating >= 4))
    fields = ["user", "movie", "gender", "age", "occupation", "zip", "genre", "year", "hour", "weekday"]
    return CTRTable(rows, np.array(labels), fields, [])


def _movielens_records(path: Path):
    """``(file:line, joined record)`` from a MovieLens folder (ML-100k or ML-1M) or a joined CSV."""
    folder = path if path.is_dir() else path.parent
    if (folder / "u.data").exists():
        users = {
            r[0]: {"age": r[1], "gender": r[2], "occupation": r[3], "zip": r[4]}
            for r in _split(folder / "u.user", "|", 5)
        }
        movies = {}
        for r in _split(folder / "u.item", "|", 24):
            flags = [g for g, flag in zip(ML100K_GENRES, r[5:24]) if flag == "1"]
            movies[r[0]] = {"title": r[1], "genres": "|".join(flags)}
        ratings, sep = folder / "u.data", "\t"
    elif (folder / "ratings.dat").exists():
        users = {
            r[0]: {"gender": r[1], "age": r[2], "occupation": r[3], "zip": r[4]}
            for r in _split(folder / "users.dat", "::", 5)
        }
        movies = {r[0]: {"title": r[1], "genres": r[2]} for r in _split(folder / "movies.dat", "::", 3)}
        ratings, sep = folder / "ratings.dat", "::"
    else:
        yield from _joined_csv(path)
        return
    for line_no, (user, movie, rating, stamp, *_) in enumerate(_split(ratings, sep, 4), 1):
        if user not in users or movie not in movies:
            raise ValueError(f"{ratings}:{line_no}: user {user} or movie {movie} is missing from the user/movie files")
        yield f"{ratings}:{line_no}", {"user_id": user, "movie_id": movie, "rating": rating, "timestamp": stamp,
                                       **users[user], **movies[movie]}  # fmt: skip


def _split(path: Path, sep: str, fields: int) -> list[list[str]]:
    """Rows of a MovieLens ``sep``-separated file with at least ``fields`` fields (Latin-1, as published)."""
    if not path.exists():
        raise ValueError(f"{path}: missing (a MovieLens folder holds ratings, users and movies files)")
    out = []
    with open(path, encoding="latin-1") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split(sep)
            if len(parts) < fields:
                raise ValueError(f"{path}:{line_no}: expected {fields} fields separated by {sep!r}, got {len(parts)}")
            out.append(parts)
    return out


def _joined_csv(path: Path):
    with open(path, newline="", encoding="latin-1") as f:
        reader = csv.DictReader(f)
        missing = set(JOINED_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{path}: missing columns {sorted(missing)} (or point at a MovieLens folder: u.data/u.user/u.item "
                "or ratings.dat/users.dat/movies.dat)"
            )
        for line_no, row in enumerate(reader, 2):
            yield f"{path}:{line_no}", row


READERS = {"criteo": read_criteo, "avazu": read_avazu, "movielens": read_movielens_ctr}


# ----------------------------------------------------------------------------------------- synthetic
@dataclass
class SyntheticCTR:
    categorical: torch.Tensor  # [N, F] indices 1..V (0 unused)
    dense: torch.Tensor  # [N, D]
    labels: torch.Tensor  # [N] float 0/1
    probabilities: torch.Tensor  # [N] the true click probabilities
    cardinalities: list[int]


def synthetic_ctr(count: int, *, seed: int = 0, generator_seed: int = 1234) -> SyntheticCTR:
    """Clicks from heterogeneous feature interactions with a known truth.

    Eight categorical fields (vocabularies 10–60) and two dense ones. The click logit sums crosses
    between specific fields, each through its own low-rank space: ``<U_0[a], U_1[b]>`` for fields 0 × 1
    and ``<U_2[a], U_3[b]>`` for 2 × 3 (rank 3, separate tables per pair, so one shared projection
    cannot serve both), a three-way cross of fields 4, 5, 6, a cross of field 7 with dense value 0, and
    weak main effects. ``generator_seed`` fixes the truth; ``seed`` draws the samples. The Bayes-optimal
    AUC of a sample is the AUC of its ``probabilities``.
    """
    truth = np.random.default_rng(generator_seed)
    sizes = [10, 20, 30, 40, 15, 25, 12, 60]
    rank = 3
    u0, u1 = truth.normal(0, 0.9, (sizes[0], rank)), truth.normal(0, 0.9, (sizes[1], rank))
    u2, u3 = truth.normal(0, 0.9, (sizes[2], rank)), truth.normal(0, 0.9, (sizes[3], rank))
    u4, u5, u6 = (truth.normal(0, 1.0, (s, 2)) for s in (sizes[4], sizes[5], sizes[6]))
    w7 = truth.normal(0, 1.0, sizes[7])
    mains = [truth.normal(0, 0.2, s) for s in sizes]
    rng = np.random.default_rng(seed)
    cat = np.stack([rng.integers(0, s, count) for s in sizes], axis=1)
    dense = rng.normal(0, 1, (count, 2))
    logit = (
        -1.0
        + (u0[cat[:, 0]] * u1[cat[:, 1]]).sum(1)
        + (u2[cat[:, 2]] * u3[cat[:, 3]]).sum(1)
        + (u4[cat[:, 4]] * u5[cat[:, 5]] * u6[cat[:, 6]]).sum(1)
        + w7[cat[:, 7]] * dense[:, 0]
        + 0.3 * dense[:, 1]
        + sum(m[cat[:, i]] for i, m in enumerate(mains))
    )
    p = 1 / (1 + np.exp(-logit))
    labels = (rng.random(count) < p).astype(np.float32)
    return SyntheticCTR(
        torch.from_numpy(cat + 1).long(), torch.from_numpy(dense).float(), torch.from_numpy(labels),
        torch.from_numpy(p).float(), [s + 1 for s in sizes],
    )  # fmt: skip


def synthetic_schema() -> Schema:
    """The schema the service uses for the synthetic fields (values are the integer codes)."""
    sizes = [10, 20, 30, 40, 15, 25, 12, 60]
    vocab = {f"f{i}": {str(v): v + 1 for v in range(s)} for i, s in enumerate(sizes)}
    return Schema([f"f{i}" for i in range(8)], ["d0", "d1"], vocab,
                  dense_log={"d0": False, "d1": False}, dense_mean={"d0": 0.0, "d1": 0.0},
                  dense_std={"d0": 1.0, "d1": 1.0})  # fmt: skip
