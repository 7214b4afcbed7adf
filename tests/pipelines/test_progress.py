"""The progress helper logs counts, rate and ETA, throttled, and always the last step."""

from __future__ import annotations

import logging

from pipelines.common.progress import Progress, track


def test_progress_lines_show_count_rate_eta_and_metrics(caplog):
    caplog.set_level(logging.INFO, logger="attention_suite.progress")
    progress = Progress(4, "train", every_s=3600)
    for step in range(4):
        progress.update(loss=1.0 / (step + 1))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2  # the first and the last; the rest are throttled
    assert lines[0].startswith("train: 1/4 (25%)") and "ETA" in lines[0] and "loss=1" in lines[0]
    assert lines[-1].startswith("train: 4/4 (100%)") and "loss=0.25" in lines[-1]


def test_track_wraps_iterables(caplog):
    caplog.set_level(logging.INFO, logger="attention_suite.progress")
    assert list(track(range(3), "items", every_s=0)) == [0, 1, 2]
    assert caplog.records[-1].getMessage().startswith("items: 3/3")
