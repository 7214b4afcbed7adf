"""``python -m pipelines.recommendation train|evaluate|presets``: the shared CLI plus ``--model`` (the model
kind, checked against the preset's task), ``--format`` (the reader of --data) and ``--dataset`` (the tag in
the registered name; by default the preset's, or the --data file's name when the preset generates its data).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from pipelines.common import cli

from .base import RecPreset
from .domain import DOMAIN


def _train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="next: mqsa-ted | sasrec; ctr: hiformer | hetero | autoint | mlp | dcnv2")
    parser.add_argument(
        "--format", dest="data_format", help="next: s3rec | movielens | csv; ctr: criteo | avazu | movielens"
    )
    parser.add_argument("--dataset", help="tag for the registered name (default: from the preset or the data file)")


def _adjust(preset: RecPreset, args: argparse.Namespace) -> RecPreset:
    pipeline = DOMAIN.pipeline_class(preset.name)
    changes: dict[str, Any] = {}
    if args.model:
        if args.model not in pipeline.kinds:
            raise SystemExit(f"--model must be one of {pipeline.kinds} for {pipeline.task} presets")
        changes["model"] = dataclasses.replace(preset.model, kind=args.model)
    if args.data_format:
        changes["data_format"] = args.data_format
    if args.dataset:
        changes["dataset"] = args.dataset
    elif getattr(args, "data", None) and preset.dataset == pipeline.generated:
        changes["dataset"] = Path(args.data).stem.lower().replace("_", "-")
    return dataclasses.replace(preset, **changes) if changes else preset


def main(argv: list[str] | None = None) -> int:
    return cli.main(DOMAIN, argv, train_options=(_train_options, _adjust))


if __name__ == "__main__":
    sys.exit(main())
