"""The genomics command line: the harness's ``train`` / ``evaluate`` / ``presets``, and ``pretrain``,
``finetune`` and ``crossval``.

    python -m pipelines.genomics pretrain --preset lm-lambda                   # shipped lambda + chloroplast
    python -m pipelines.genomics pretrain --preset lm-lambda --fasta my.fa     # any FASTA / FASTQ / GenBank
    python -m pipelines.genomics pretrain --preset mlm-nrc --fasta path/to/nrc/nRC_train.fasta
    python -m pipelines.genomics finetune --task splice                        # UCI splice (shipped)
    python -m pipelines.genomics finetune --task splice --arch transformer     # same width and depth
    python -m pipelines.genomics finetune --task nrc --data path/to/nrc
    python -m pipelines.genomics finetune --task coding                        # chloroplast CDS tags
    python -m pipelines.genomics finetune --task csv --data my_dataset/        # train.csv/test.csv (seq,label)
    python -m pipelines.genomics crossval --preset splice --folds 10
    python -m pipelines.genomics evaluate --preset splice                      # the champion, again

``pretrain --fasta F`` is ``train --data F`` (preset ``lm-lambda`` unless one is named); ``finetune --task T``
runs preset ``T`` (``--preset`` picks another, e.g. ``quick-splice``); ``--init NAME`` starts from a
registered pretrained model's backbone. ``--model``, ``--arch`` and ``--dataset`` adjust the preset's model
config (another named model, another architecture, the registered name's tag).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from pipelines.common import cli
from pipelines.common.tracking import markdown_table
from services.genomics.models import ARCHS, ATTENTION

from .classify import crossval
from .common import GenomicsPreset
from .domain import DOMAIN

ATTENTION_NAMES = sorted({name for names in ATTENTION.values() for name in names})


def main(argv: list[str] | None = None) -> int:
    return cli.main(
        DOMAIN, rewrite(list(sys.argv[1:] if argv is None else argv)),
        extra={"crossval": (_configure_crossval, _run_crossval)}, train_options=(_train_options, _adjust),
    )  # fmt: skip


def rewrite(argv: list[str]) -> list[str]:
    """``pretrain --fasta F`` and ``finetune --task T`` are ``train`` with the data / preset named differently."""
    if not argv or argv[0] not in ("pretrain", "finetune"):
        return argv
    command, rest = argv[0], argv[1:]
    if command == "pretrain":
        rest = ["--data" if a == "--fasta" else a for a in rest]
        if "--preset" not in rest:
            rest = ["--preset", "lm-lambda", *rest]
    elif "--task" in rest:
        i = rest.index("--task")
        task = rest[i + 1] if i + 1 < len(rest) else ""
        rest = rest[:i] + rest[i + 2 :]
        if "--preset" not in rest:
            rest = ["--preset", task, *rest]
    return ["train", *rest]


def _train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", choices=ARCHS, help="replace the architecture")
    parser.add_argument("--model", help="a services.genomics.models preset (tiny-1k, beacon-small, ...)")
    parser.add_argument("--init", help="registered model whose backbone starts fine-tuning")
    parser.add_argument("--dataset", help="tag for the registered name (default: the task)")
    parser.add_argument("--attention", choices=ATTENTION_NAMES,
                        help="the attention archs' mechanism from the core's registry (transformer, beacon: "
                             "softmax or sigmoid)")  # fmt: skip


def _adjust(preset: GenomicsPreset, args: argparse.Namespace) -> GenomicsPreset:
    options = {k: getattr(args, k, None) for k in ("arch", "model", "init", "dataset", "attention")}
    return DOMAIN.pipeline_class(preset.name).adjusted(preset, **options)


def _configure_crossval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", required=True, choices=sorted(DOMAIN.presets))
    parser.add_argument("--data")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--arch", help="replace the preset's architecture (e.g. transformer)")
    parser.add_argument("--seed", type=int, help=cli.SEED_HELP)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=cli.SET_HELP)


def _run_crossval(args: argparse.Namespace) -> int:
    import mlflow

    from pipelines.common.tracking import metric_name, set_experiment

    preset = DOMAIN.presets[args.preset]
    if args.arch:
        preset = DOMAIN.pipeline_class(args.preset).adjusted(preset, arch=args.arch)
    preset = cli.overridden(preset, args)
    started = time.time()
    rows = crossval(preset, args.data, args.folds)
    summary = []
    for model in dict.fromkeys(r["model"] for r in rows):
        accuracies = [r["accuracy"] for r in rows if r["model"] == model]
        summary.append({"model": model, "folds": len(accuracies), "mean_accuracy": float(np.mean(accuracies)),
                        "std_accuracy": float(np.std(accuracies))})  # fmt: skip
    experiment = set_experiment("genomics")
    with mlflow.start_run(run_name=f"crossval-{preset.name}-{args.arch or 'default'}",
                          experiment_id=experiment.experiment_id):  # fmt: skip
        mlflow.log_params({"preset": preset.name, "arch": preset.model.arch, "folds": args.folds,
                           "seed": preset.seed, "data": args.data or "shipped"})  # fmt: skip
        mlflow.log_metrics({metric_name(f"cv/{r['model']}/mean_accuracy"): r["mean_accuracy"] for r in summary})
        mlflow.log_text(markdown_table(rows), "crossval/folds.md")
        mlflow.log_text(markdown_table(summary), "crossval/summary.md")
    print(markdown_table(summary))
    print(f"{args.folds}-fold cross-validation in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
