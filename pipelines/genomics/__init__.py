"""Genomics pipelines on the platform harness, one module per task: HyenaDNA / transformer language-model
pretraining (:mod:`.lm`), BEACON-B masked-LM pretraining (:mod:`.mlm`), per-nucleotide tagging
(:mod:`.tagging`) and sequence classification with its cross-validation (:mod:`.classify`); the data
(:mod:`.data`), metrics (:mod:`.metrics`) and what the pipelines share (:mod:`.common`); the command line
in :mod:`.__main__` (``python -m pipelines.genomics --help``)."""

from __future__ import annotations

from .classify import ClassifyPipeline, ClassifyPreset, crossval
from .common import GenomicsPipeline, GenomicsPreset, train_in_process
from .data import CHLOROPLAST, LAMBDA, PROMOTERS, SPLICE, Example, synthetic_genome, synthetic_splice
from .domain import DOMAIN, PRESETS
from .lm import LMPipeline, LMPreset
from .mlm import MLMPipeline, MLMPreset
from .tagging import TaggingPipeline, TaggingPreset

__all__ = [
    "CHLOROPLAST", "DOMAIN", "LAMBDA", "PRESETS", "PROMOTERS", "SPLICE", "ClassifyPipeline", "ClassifyPreset",
    "Example", "GenomicsPipeline", "GenomicsPreset", "LMPipeline", "LMPreset", "MLMPipeline", "MLMPreset",
    "TaggingPipeline", "TaggingPreset", "crossval", "main", "synthetic_genome", "synthetic_splice",
    "train_in_process",
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """The command line (what ``python -m pipelines.genomics`` runs)."""
    from .__main__ import main as run

    return run(argv)
