"""Pointer-Net solver pipelines: convex hull, Delaunay triangulation and TSP on uniform random points.

    python -m pipelines.pointer train --preset am-tsp20
    python -m pipelines.pointer evaluate --preset am-tsp20
    python -m pipelines.pointer report --data data/combinatorial   # the README's tables
    ray job submit --address http://127.0.0.1:8265 -- python -m pipelines.pointer train --preset quick-tsp

One pipeline per way of learning, because that is where the training code differs (the three problems
differ only in how an answer is scored, :mod:`.scoring`):

* :mod:`.supervised`: teacher forcing on exact answers (Vinyals et al.), for the Pointer Network and the
  attention model alike, on every task;
* :mod:`.reinforce`: the attention model on the TSP by REINFORCE with a greedy-rollout baseline (Kool et al.).

:mod:`.base` holds what both share (preset, registered name, validation, evaluation); :mod:`.report` the
``report`` command.
"""

from pipelines.common import cli
from pipelines.common.contract import Domain

from . import report
from .base import PointerPipeline, PointerPreset, registered_name
from .reinforce import ReinforcePipeline, ReinforcePreset
from .supervised import SupervisedPipeline, SupervisedPreset

DOMAIN = Domain("pointer", (SupervisedPipeline, ReinforcePipeline))
PRESETS = DOMAIN.presets


def main(argv: list[str] | None = None) -> int:
    """The command line (``train``, ``evaluate``, ``presets``, ``report``)."""
    return cli.main(DOMAIN, argv, extra={"report": (report.configure, report.run_report)})


__all__ = [
    "DOMAIN",
    "PRESETS",
    "PointerPipeline",
    "PointerPreset",
    "ReinforcePipeline",
    "ReinforcePreset",
    "SupervisedPipeline",
    "SupervisedPreset",
    "main",
    "registered_name",
]
