"""Recommendation pipelines, one module per task: next-item (:mod:`.next_item`: MQSA-TED, SASRec) and click
ranking (:mod:`.clicks`: Hiformer and its baselines); what both share in :mod:`.base`; a preset's name picks
its pipeline through :data:`DOMAIN` (:mod:`.domain`); the command line in :mod:`.__main__`
(``python -m pipelines.recommendation --help``).
"""

from __future__ import annotations

from .base import RecommendationPipeline, RecPreset, registered_name
from .clicks import ClickPipeline, ClickPreset, request_ms, request_times
from .domain import DOMAIN, PRESETS
from .next_item import NextItemPipeline, NextItemPreset

__all__ = [
    "DOMAIN",
    "PRESETS",
    "ClickPipeline",
    "ClickPreset",
    "NextItemPipeline",
    "NextItemPreset",
    "RecPreset",
    "RecommendationPipeline",
    "main",
    "registered_name",
    "request_ms",
    "request_times",
]


def main(argv: list[str] | None = None) -> int:
    """The command line (what ``python -m pipelines.recommendation`` runs)."""
    from .__main__ import main as run

    return run(argv)
