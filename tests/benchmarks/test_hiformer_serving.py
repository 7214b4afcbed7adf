"""The Hiformer serving benchmark on a small sweep: every variant timed, ratios against the first row."""

from __future__ import annotations

from benchmarks import hiformer_serving


def test_sweep_times_every_variant_against_the_full_rank_model():
    rows = hiformer_serving.sweep((8,), (2,), (4, 32), repeats=2)
    assert [(r["projections"], r["pruned"]) for r in rows] == [
        ("full", False), ("full", True), ("rank 2", False), ("rank 2", True)
    ]  # fmt: skip
    assert rows[0]["speed-up @4"] == rows[0]["speed-up @32"] == 1.0
    assert all(r[f"ms @{n}"] > 0 for r in rows for n in (4, 32))
    table = hiformer_serving.markdown(rows)
    assert table.strip().count("\n") == len(rows) + 1 and "| 8 | rank 2 | True |" in table
