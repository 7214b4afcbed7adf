"""The genomics domain: one pipeline per task, each with its presets; a preset's name picks its pipeline."""

from __future__ import annotations

from pipelines.common.contract import Domain

from .classify import ClassifyPipeline
from .lm import LMPipeline
from .mlm import MLMPipeline
from .tagging import TaggingPipeline

DOMAIN = Domain("genomics", (LMPipeline, MLMPipeline, TaggingPipeline, ClassifyPipeline))
PRESETS = DOMAIN.presets
