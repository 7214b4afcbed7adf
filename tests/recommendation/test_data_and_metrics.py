"""Loaders on every format (and malformed lines), the leave-one-out split, ranking metrics against hand
computations, the transition graph on a toy sequence, the CTR schema and the synthetic generator."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from services.recommendation import ctr, metrics
from services.recommendation import sequences as sq

DATA = Path(__file__).resolve().parent.parent / "data"


def test_s3rec_reader_and_indexing():
    raw = sq.read_s3rec(DATA / "toys_sample.txt")
    assert len(raw.sequences) == 50 and raw.sequences["1"] == ["1", "2", "3", "4", "5"]
    indexed = sq.index_items(raw)
    assert indexed.sequences[0] == [1, 2, 3, 4, 5] and indexed.item_ids[:5] == ["1", "2", "3", "4", "5"]
    assert all(0 < i <= indexed.num_items for s in indexed.sequences for i in s)


def test_movielens_and_csv_readers_order_by_time(tmp_path):
    udata = tmp_path / "u.data"
    udata.write_text("1\t10\t5\t300\n1\t11\t3\t100\n2\t10\t4\t50\n")
    assert sq.read_movielens(udata).sequences == {"1": ["11", "10"], "2": ["10"]}
    dat = tmp_path / "ratings.dat"
    dat.write_text("7::3::5::20\n7::4::5::10\n")
    assert sq.read_movielens(dat).sequences == {"7": ["4", "3"]}
    csv_path = tmp_path / "x.csv"
    csv_path.write_text("user,item,timestamp\na,x,2\na,y,1\n")
    assert sq.read_interactions_csv(csv_path).sequences == {"a": ["y", "x"]}


@pytest.mark.parametrize(
    ("name", "content", "reader", "message"),
    [
        ("bad.txt", "1\n", sq.read_s3rec, "expected 'user item"),
        ("u.data", "1\t2\t3\n", sq.read_movielens, "expected user, item, rating, timestamp"),
        ("u2.data", "1\t2\t3\tnoon\n", sq.read_movielens, "is not a number"),
        ("x.csv", "user,item\na,b\n", sq.read_interactions_csv, "missing columns"),
    ],
)
def test_malformed_sequence_files(tmp_path, name, content, reader, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        reader(path)


def test_k_core_and_leave_one_out():
    raw = sq.Interactions({"a": ["1", "2", "3", "4"], "b": ["1", "2", "9"], "c": ["1", "2", "3"]})
    kept = sq.k_core(raw, k=2)  # items 4 and 9 occur once: dropped; every user keeps >= 2 items
    assert kept.sequences == {"a": ["1", "2", "3"], "b": ["1", "2"], "c": ["1", "2", "3"]}
    assert sq.k_core(raw, k=3).sequences == {}  # dropping item 3 leaves every user with 2 < 3 items
    split = sq.leave_one_out([[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]])
    assert split.train == [[1, 2, 3], [6, 7], [8]]
    assert split.valid == [([1, 2, 3], 4), ([8], 9)]
    assert split.test == [([1, 2, 3, 4], 5), ([8, 9], 10)]


def test_transition_graph_on_a_toy_sequence():
    counts = sq.transition_counts([[1, 2, 1, 2, 3], [2, 3]], num_items=3).to_dense()
    expected = torch.zeros(4, 4)
    expected[1, 2], expected[2, 1], expected[2, 3] = 2, 1, 2
    assert torch.equal(counts, expected)
    # truncation to the last max_len items, as the model sees them
    assert sq.transition_counts([[1, 2, 3, 1]], 3, max_len=2).to_dense()[3, 1] == 1
    assert sq.transition_counts([[1, 2, 3, 1]], 3, max_len=2).to_dense()[1, 2] == 0


def test_ranking_metrics_by_hand():
    scores = torch.tensor([[0.0, 0.9, 0.5, 0.7, 0.1], [0.0, 0.1, 0.2, 0.3, 0.4]])
    # row 0: target 2; item 1 (0.9) is seen and excluded, item 3 (0.7) outranks it -> rank 1
    # row 1: target 1, everything outranks it -> rank 3
    ranks = metrics.target_ranks(scores, torch.tensor([2, 1]), [[1], []])
    assert ranks.tolist() == [1, 3]
    result = metrics.ranking_metrics(ranks, ks=(1, 2, 5))
    assert result["HR@1"] == 0.0 and result["HR@2"] == 0.5 and result["HR@5"] == 1.0
    assert result["NDCG@2"] == pytest.approx(0.5 / math.log2(3))
    assert result["NDCG@5"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / 2)
    # a target seen before stays rankable
    assert metrics.target_ranks(scores[:1], torch.tensor([1]), [[1]]).tolist() == [0]


def test_ctr_loaders_on_the_published_samples():
    criteo = ctr.read_criteo(DATA / "criteo_sample.txt")
    assert len(criteo.rows) == 39 and set(criteo.labels) <= {0, 1}
    assert len(criteo.categorical) == 26 and len(criteo.dense) == 13
    avazu = ctr.read_avazu(DATA / "avazu_sample.txt")
    assert len(avazu.rows) == 19 and "hour_of_day" in avazu.categorical and "id" not in avazu.categorical
    movies = ctr.read_movielens_ctr(DATA / "movielens_sample.txt")
    assert len(movies.rows) == 29 and movies.rows[0]["year"] == "1994" and movies.rows[0]["genre"] == "Comedy"
    assert list(movies.labels[:2]) == [1, 0]  # ratings 4 and 3


def test_criteo_without_header_and_malformed_rows(tmp_path):
    lines = (DATA / "criteo_sample.txt").read_text().splitlines()[1:4]
    headless = tmp_path / "c.txt"
    headless.write_text("\n".join(line.replace(",", "\t") for line in lines) + "\n")
    assert len(ctr.read_criteo(headless).rows) == 3
    bad = tmp_path / "bad.txt"
    bad.write_text("label,I1\n1,2\n")
    with pytest.raises(ValueError, match="expected 40 fields"):
        ctr.read_criteo(bad)


def test_schema_oov_hashing_and_dense_scaling():
    rows = [{"c": "a", "d": "10"}, {"c": "b", "d": "1000"}, {"c": "a", "d": ""}]
    schema = ctr.fit_schema(rows, ["c"], ["d"])
    cat, dense = schema.encode([{"c": "a", "d": "10"}, {"c": "unseen", "d": None}])
    assert cat[:, 0].tolist() == [schema.vocab["c"]["a"], ctr.OOV]
    assert schema.dense_log["d"] and dense[1, 0] == 0.0
    hashed = ctr.fit_schema(rows, ["c"], [], hash_buckets=16)
    assert hashed.cardinalities == [17] and 1 <= hashed.index("c", "zzz") <= 16
    with pytest.raises(ValueError, match="finite"):
        schema.encode([{"c": "a", "d": "nan"}])


def test_synthetic_ctr_truth_is_fixed_and_informative():
    a, b = ctr.synthetic_ctr(5000, seed=1), ctr.synthetic_ctr(5000, seed=1)
    assert torch.equal(a.labels, b.labels)
    bayes = metrics.click_metrics(a.labels.numpy(), a.probabilities.numpy())["AUC"]
    assert 0.85 < bayes < 0.95
    shuffled = metrics.click_metrics(a.labels.numpy(), np.random.default_rng(0).permutation(a.probabilities.numpy()))
    assert shuffled["AUC"] < 0.55


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")


def test_movielens_ctr_reads_the_distributions_as_they_come(tmp_path):
    ml100k, ml1m = tmp_path / "ml-100k", tmp_path / "ml-1m"
    ml100k.mkdir()
    ml1m.mkdir()
    _write(ml100k / "u.data", ["1\t10\t5\t881250949", "2\t20\t3\t891717742"])
    _write(ml100k / "u.user", ["1|24|M|technician|85711", "2|53|F|other|94043"])
    flags = ["0"] * 19
    action = flags.copy()
    action[1] = "1"
    _write(ml100k / "u.item", [
        "10|Richard III (1995)|22-Jan-1996||http://x|" + "|".join(action),
        "20|Angels and Saints (1997)|01-Jan-1997||http://y|" + "|".join([*flags[:8], "1", *flags[9:]]),
    ])  # fmt: skip
    _write(ml1m / "ratings.dat", ["1::1193::5::978300760", "1::661::2::978302109"])
    _write(ml1m / "users.dat", ["1::F::1::10::48067"])
    _write(
        ml1m / "movies.dat",
        ["1193::One Flew Over the Cuckoo's Nest (1975)::Drama", "661::James (1996)::Animation|Children's"],
    )
    for folder, expected in ((ml100k, ("Action", "1995", "857")), (ml1m, ("Drama", "1975", "480"))):
        for path in (folder, next(folder.iterdir())):  # the folder or any file in it
            table = ctr.read_movielens_ctr(path)
            assert table.labels.tolist() == [1, 0]
            first = table.rows[0]
            assert (first["genre"], first["year"], first["zip"]) == expected
    (ml1m / "users.dat").unlink()
    with pytest.raises(ValueError, match=r"users\.dat: missing"):
        ctr.read_movielens_ctr(ml1m)
