"""Vision pipelines: VAN, BiFormer and Agent Attention classifiers (:mod:`.classify`).

python -m pipelines.vision train --preset van-mnist --data data/vision
python -m pipelines.vision train --preset biformer-mnist --data data/vision
python -m pipelines.vision train --preset agent-mnist --data data/vision
python -m pipelines.vision train --preset quick-van          # scikit-learn's digits, no download
"""

from pipelines.common import cli
from pipelines.common.contract import Domain

from .classify import PRESETS, ClassifyPipeline, TimmModel, VisionPreset

DOMAIN = Domain("vision", (ClassifyPipeline,))


def main(argv: list[str] | None = None) -> int:
    """The command line (``train``, ``evaluate``, ``presets``)."""
    return cli.main(DOMAIN, argv)


__all__ = ["DOMAIN", "PRESETS", "ClassifyPipeline", "TimmModel", "VisionPreset", "main"]
