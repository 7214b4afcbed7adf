"""The core benchmark's machinery: a real in-process measurement, the exponent fit, RESULTS.md."""

from __future__ import annotations

import math

import pytest

from benchmarks import common, core_scaling


def test_measure_runs_every_mechanism_at_a_small_length():
    for mechanism in core_scaling.MECHANISMS:
        point = core_scaling.measure(mechanism, 256, threads=1)
        assert point["seconds"] > 0 and point["peak_mib"] >= 0


def test_fit_exponent_recovers_power_laws():
    quadratic = {n: {"seconds": 3e-9 * n**2} for n in (1024, 4096, 8192, 16384)}
    linear = {n: {"seconds": 2e-6 * n} for n in (1024, 4096, 8192, 16384)}
    assert core_scaling.fit_exponent(quadratic) == pytest.approx(2.0)
    assert core_scaling.fit_exponent(linear) == pytest.approx(1.0)
    assert core_scaling.fit_exponent({4096: {"seconds": 1.0}}) is None
    assert core_scaling.fit_exponent({4096: {"seconds": 1.0}, 8192: {"error": "out of memory"}}) is None


def test_report_lists_every_mechanism_with_provenance():
    results = {
        m: {n: {"seconds": 1e-6 * n ** (1 + (m == "softmax")), "peak_mib": 1.0} for n in (4096, 8192)}
        for m in core_scaling.MECHANISMS
    }
    results["sigmoid"][8192] = {"error": "skipped: budget"}
    text = core_scaling.report(results, [4096, 8192], threads=2)
    assert "commit `" in text and "Measured " in text
    assert "- softmax: **2.00**" in text and "- lightning: **1.00**" in text
    assert "- sigmoid: n/a" in text and "skipped: budget" in text
    assert math.isclose(core_scaling.fit_exponent(results["hyena"]), 1.0)


def test_write_section_replaces_only_its_own_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    common.write_section("a", "first A", path)
    common.write_section("b", "only B", path)
    common.write_section("a", "second A", path)
    text = path.read_text()
    assert "second A" in text and "first A" not in text and "only B" in text
    assert text.count("<!-- a:begin -->") == 1
