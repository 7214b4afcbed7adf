"""The recommendation domain: one pipeline per task, each with its presets; a preset's name picks its pipeline."""

from __future__ import annotations

from pipelines.common.contract import Domain

from .clicks import ClickPipeline
from .next_item import NextItemPipeline

DOMAIN = Domain("recommendation", (NextItemPipeline, ClickPipeline))
PRESETS = DOMAIN.presets
