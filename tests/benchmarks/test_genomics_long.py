"""The long-context benchmark's machinery on small lengths: real subprocess measurements, the skip rule,
the exponent fit and the report."""

from __future__ import annotations

import pytest

from benchmarks import genomics_long


def test_sweep_measures_every_model_in_subprocesses():
    results = genomics_long.sweep([256, 512], width=16, layers=1, budget_s=120)
    assert set(results) == {"HyenaDNA", "lightning", "transformer", "sigmoid transformer"}
    for rows in results.values():
        assert [r["length"] for r in rows] == [256, 512]
        assert all(r["status"] == "ok" and r["seconds"] > 0 and r["peak_mib"] >= 0 for r in rows)
    text = genomics_long.report(results, {"bases": 48514, "seconds": 1.0, "dim": 16}, width=16, layers=1)
    assert "| 256 |" in text and "k = " in text and "48,514 bases" in text
    assert "at 512 tokens lightning takes" in text and "at 512 tokens sigmoid transformer takes" in text


def test_runs_predicted_over_budget_are_skipped(monkeypatch):
    def fake(model, length, width, layers, timeout_s):
        return {"status": "ok", "seconds": 1e-6 * length**2, "peak_mib": 1.0}

    monkeypatch.setattr(genomics_long, "run_one", fake)
    rows = genomics_long.sweep([1000, 2000, 4000, 64000], width=8, layers=1, budget_s=100)["transformer"]
    assert [r["status"] for r in rows[:3]] == ["ok"] * 3
    assert rows[3]["status"].startswith("skipped (predicted")  # 4096 s predicted from the fitted k = 2


def test_exponent_fit():
    assert genomics_long.exponent([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)
