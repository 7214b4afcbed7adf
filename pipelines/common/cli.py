"""The command line every pipeline shares: ``python -m pipelines.<domain> <command> --preset <name>``.

Commands: ``train`` (with ``--resume``, ``--workers``, ``--cpus``, ``--epochs``, ``--seed``, ``--data``, and
``--set key=value`` for any other preset field), ``evaluate``
(a registered version or the champion, logged as its own MLflow run), ``presets`` (list them); a domain
may add more. Bad input (a missing file, a malformed row, an unknown preset) ends in one line on stderr
naming what was wrong and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import logging
import math
import os
import sys
from collections.abc import Callable
from typing import Any

from .contract import Domain, TrainPreset
from .driver import train
from .tracking import log_figures, markdown_table, metric_name, set_experiment

Configure = Callable[[argparse.ArgumentParser], None]
Command = Callable[[argparse.Namespace], int]
Adjust = Callable[[Any, argparse.Namespace], Any]

SET_HELP = (
    "override any preset field, repeatable: --set lr=5e-4 --set model.dropout=0.2 (a dot reaches into the model's "
    "config; a key that is not a field gets an error listing the fields; the run's MLflow params record them all)"
)
SEED_HELP = "override the preset's seed (initialisation and order; some presets draw generated data or a split from it)"

# What a user's input can be wrong with: these end in one line, anything else is our bug (traceback).
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, LookupError)


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in ("alembic", "mlflow.store", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def describe(name: str, preset: TrainPreset) -> str:
    """One line per preset: its ``about``, then what sizes the run."""
    workers = f"{preset.workers} worker(s) × {preset.cpus_per_worker:g} CPU"
    size = f"{preset.epochs} epochs, batch {preset.batch_size}, {workers}"
    return f"  {name:<24} {preset.about + '; ' if preset.about else ''}{size}"


def preset_listing(domain: Domain) -> str:
    return "presets:\n" + "\n".join(describe(n, p) for n, p in domain.presets.items())


def main(
    domain: Domain,
    argv: list[str] | None = None,
    extra: dict[str, tuple[Configure, Command]] | None = None,
    train_options: tuple[Configure, Adjust] | None = None,
) -> int:
    """Run the pipeline CLI. ``extra`` adds commands; ``train_options`` = (add arguments to ``train`` and
    ``evaluate``, turn them into preset overrides) for domain options such as ``--model``."""
    listing = preset_listing(domain)
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=f"python -m pipelines.{domain.name}", epilog=listing, formatter_class=formatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, epilog=listing, formatter_class=formatter)

    names = sorted(domain.presets)
    t = command("train", "train a preset on Ray Train, register the model, promote if better")
    t.add_argument("--preset", required=True, choices=names, metavar="PRESET", help="one of the presets below")
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
    t.add_argument("--seed", type=int, help=SEED_HELP)
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    t.add_argument("--no-promote", action="store_true", help="register but never move the champion alias")
    e = command("evaluate", "evaluate a registered model version (default: the champion)")
    e.add_argument("--preset", required=True, choices=names, metavar="PRESET", help="one of the presets below")
    e.add_argument("--data")
    e.add_argument("--version", help="registered version (default: the @champion alias)")
    if train_options:
        train_options[0](t)
        train_options[0](e)
    command("presets", "list the presets, a line each")
    for name, (configure, _) in (extra or {}).items():
        configure(sub.add_parser(name, epilog=listing, formatter_class=formatter))

    args = parser.parse_args(argv)
    if getattr(args, "data", None) and "://" not in args.data:
        args.data = os.path.abspath(args.data)  # Ray Train workers run in another directory
    _setup_logging()
    try:
        return _run(domain, args, extra or {}, train_options)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a failure inside a Ray Train worker arrives wrapped: unwrap user errors
        cause = _user_cause(error)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        return 2


def _user_cause(error: BaseException) -> BaseException | None:
    """The user error at the root of a wrapped one (Ray Train's TrainingFailedError, a RayTaskError)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, USER_ERRORS):
            return error
        nested = getattr(error, "worker_failures", None) or {}
        nested = list(nested.values()) if isinstance(nested, dict) else list(nested)
        error = (nested[0] if nested else None) or getattr(error, "cause", None) or error.__cause__
    return None


def _run(domain: Domain, args: argparse.Namespace, extra: dict, train_options) -> int:
    if args.command == "presets":
        print(preset_listing(domain))
        return 0
    if args.command in extra:
        return extra[args.command][1](args)
    preset = domain.presets[args.preset]
    if train_options:
        preset = train_options[1](preset, args)
    if args.command == "evaluate":
        return _evaluate(domain, preset, args)
    preset = overridden(preset, args)
    outcome = train(
        domain.pipeline_class(args.preset),
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


def overridden(preset: TrainPreset, args: argparse.Namespace) -> TrainPreset:
    """``preset`` with the ``--set``, ``--epochs``, ``--cpus`` and ``--seed`` that a command was given (those it
    has; the named flags win over ``--set``)."""
    for setting in getattr(args, "set", None) or []:
        preset = with_setting(preset, setting)
    given = {"epochs": getattr(args, "epochs", None) or None, "cpus_per_worker": getattr(args, "cpus", None) or None,
             "seed": getattr(args, "seed", None)}  # fmt: skip
    return dataclasses.replace(preset, **{k: v for k, v in given.items() if v is not None})


def with_setting(config: Any, setting: str) -> Any:
    """``config`` (a dataclass) with one ``key=value`` (``model.dropout=0.2`` reaches into a nested one). The
    value is read as the field's type (an int, a float, a bool, a string, ``none`` for an optional field); a
    ValueError names the key and the rule otherwise."""
    key, sep, raw = setting.partition("=")
    if not sep or not key:
        raise ValueError(f"--set {setting!r}: expected KEY=VALUE, e.g. lr=5e-4 or model.dropout=0.2")
    return _set(config, key.split("."), raw, key)


def _set(config: Any, path: list[str], raw: str, key: str) -> Any:
    head, rest = path[0], path[1:]
    fields = {f.name: f for f in dataclasses.fields(config)}
    if head not in fields:
        near = difflib.get_close_matches(head, fields, n=3)
        hint = f"did you mean {', '.join(near)}?" if near else f"its fields: {', '.join(fields)}"
        raise ValueError(f"--set {key}: {type(config).__name__} has no field {head!r}; {hint}")
    current = getattr(config, head)
    if rest and not dataclasses.is_dataclass(current):
        raise ValueError(f"--set {key}: {head!r} is a {type(current).__name__}, not a config with fields")
    value = _set(current, rest, raw, key) if rest else _read(key, raw, current, str(fields[head].type))
    return dataclasses.replace(config, **{head: value})


def _read(key: str, raw: str, current: Any, annotation: str) -> Any:
    """``raw`` as the field's type: the annotation's where it names a scalar (``float | None``), else
    ``current``'s (a list, a nested config)."""
    optional = "None" in annotation
    if optional and raw.lower() == "none":
        return None
    kind = next((t for t in (bool, int, float, str) if annotation.startswith(t.__name__)), type(current))
    if dataclasses.is_dataclass(current):
        raise ValueError(f"--set {key}: a config; set its fields as {key}.FIELD=VALUE")
    if kind is bool:
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"--set {key}={raw}: must be true or false")
        return raw.lower() in ("true", "1")
    if kind in (int, float):
        try:
            value = kind(raw)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):
            rule = "an integer" if kind is int else "a finite number"
            raise ValueError(f"--set {key}={raw}: must be {rule}{' or none' if optional else ''}")
        return value
    if kind is str:
        return raw
    if kind in (list, tuple):
        return _read_sequence(key, raw, current)
    raise ValueError(f"--set {key}: a {kind.__name__} field cannot be set from the command line")


def _read_sequence(key: str, raw: str, current: list | tuple) -> list | tuple:
    """``128,64`` or ``[128, 64]`` as a list (tuple) whose items have the type of ``current``'s."""
    rule = f"--set {key}={raw}: must be a comma-separated list"
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        raise ValueError(rule) from None
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    kinds = {type(v) for v in current} or {int, float, str}
    if not all(type(v) in kinds or (float in kinds and type(v) is int) for v in items):
        raise ValueError(f"{rule} of {' or '.join(sorted(k.__name__ for k in kinds))}")
    return type(current)(items)


def _evaluate(domain: Domain, preset: TrainPreset, args: argparse.Namespace) -> int:
    import mlflow

    from modelstore import registry

    pipeline = domain.pipeline(preset, args.data)
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
