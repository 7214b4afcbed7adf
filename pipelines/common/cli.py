"""The command line every pipeline shares: ``python -m pipelines.<domain> <command> --preset <name>``.

Commands: ``train`` (with ``--resume``, ``--workers``, ``--data``), ``evaluate`` (a registered version
or the champion, logged as its own MLflow run), ``presets`` (list them); a domain may add more.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from collections.abc import Callable
from typing import Any

from .contract import Pipeline
from .driver import train
from .tracking import log_figures, markdown_table, metric_name, set_experiment


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in ("alembic", "mlflow.store", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(
    pipeline_cls: type[Pipeline],
    argv: list[str] | None = None,
    extra: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]]
    | None = None,
    train_options: tuple[Callable[[argparse.ArgumentParser], None], Callable[[Any, argparse.Namespace], Any]]
    | None = None,
) -> int:
    """Run the pipeline CLI. ``extra`` adds commands; ``train_options`` = (add arguments to ``train`` and
    ``evaluate``, turn them into preset overrides) for domain options such as ``--model``."""
    parser = argparse.ArgumentParser(prog=f"python -m pipelines.{pipeline_cls.domain}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a preset on Ray Train, register the model, promote if better")
    t.add_argument("--preset", required=True, choices=sorted(pipeline_cls.presets))
    t.add_argument("--data", help="data path (domain-specific; generated data when omitted)")
    t.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN",
        help="continue the latest (or the named) run of this preset from its last checkpoint",
    )
    t.add_argument("--workers", type=int, help="Ray Train workers (0 = in-process); default from the preset")
    t.add_argument("--epochs", type=int, help="override the preset's epochs")
    t.add_argument(
        "--cpus",
        type=float,
        metavar="N",
        help="CPUs per Ray Train worker (also its torch threads, at least 1); default from the preset",
    )
    t.add_argument("--no-promote", action="store_true", help="register but never move the champion alias")
    if train_options:
        train_options[0](t)

    e = sub.add_parser("evaluate", help="evaluate a registered model version (default: the champion)")
    e.add_argument("--preset", required=True, choices=sorted(pipeline_cls.presets))
    e.add_argument("--data")
    e.add_argument("--version", help="registered version (default: the @champion alias)")
    if train_options:
        train_options[0](e)

    sub.add_parser("presets", help="list the presets with their settings")
    for name, (configure, _) in (extra or {}).items():
        configure(sub.add_parser(name))

    args = parser.parse_args(argv)
    if getattr(args, "data", None) and "://" not in args.data:
        args.data = os.path.abspath(args.data)  # Ray Train workers run in another directory
    _setup_logging()
    if args.command == "presets":
        for name, preset in pipeline_cls.presets.items():
            print(f"{name}: {json.dumps(preset.to_dict())}")
        return 0
    if args.command == "train":
        preset = pipeline_cls.preset_named(args.preset)
        if args.epochs:
            preset = dataclasses.replace(preset, epochs=args.epochs)
        if args.cpus:
            preset = dataclasses.replace(preset, cpus_per_worker=args.cpus)
        if train_options:
            preset = train_options[1](preset, args)
        outcome = train(
            pipeline_cls,
            preset,
            data=args.data,
            resume=args.resume,
            workers=args.workers,
            promote=not args.no_promote,
        )
        print(markdown_table(outcome.evaluation.table))
        print(
            f"registered {outcome.registered_name} v{outcome.version} "
            f"({'champion' if outcome.promoted else 'not promoted'}; run {outcome.run_id})"
        )
        return 0
    if args.command == "evaluate":
        return _evaluate(pipeline_cls, args, train_options)
    return extra[args.command][1](args)


def _evaluate(pipeline_cls: type[Pipeline], args: argparse.Namespace, train_options=None) -> int:
    import mlflow

    from modelstore import registry

    preset = pipeline_cls.preset_named(args.preset)
    if train_options:
        preset = train_options[1](preset, args)
    pipeline = pipeline_cls(preset, args.data)
    experiment = set_experiment(pipeline.domain)
    model, info = registry.load_registered(pipeline.registered_name, version=args.version)
    evaluation = pipeline.evaluate(model)
    with mlflow.start_run(run_name=f"evaluate-{info.name}-v{info.version}", experiment_id=experiment.experiment_id):
        mlflow.set_tags({"evaluates": f"{info.name}/{info.version}", "source_run": info.run_id or ""})
        mlflow.log_metrics({metric_name(f"eval/{k}"): float(v) for k, v in evaluation.metrics.items()})
        mlflow.log_text(markdown_table(evaluation.table), "evaluation/table.md")
        log_figures(evaluation.figures)
    print(markdown_table(evaluation.table))
    return 0
