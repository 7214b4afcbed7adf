"""The model zoo: trained weights and model cards that ship with the suite (``zoo/<registered name>/``).

    zoo/<name>/model.safetensors   weights (float16 where the card's figure does not move; loading casts back)
    zoo/<name>/config.json         the builder and config that rebuild the module (modelstore.artifacts)
    zoo/<name>/card.json           the model card: data, split, preset, command, epochs, wall time, machine,
                                   test metrics, the headline figure with its target, date, commit, licence
    zoo/<name>/README.md           the same card for people

Commands::

    python -m pipelines.zoo register                  # every zoo model into MLflow, alias champion (make up)
    python -m pipelines.zoo export NAME --version N --command "..." --headline METRIC --target "..." ...
    python -m pipelines.zoo table                      # the README's table of served models

``register`` logs each zoo model as a run tagged ``source=zoo`` (the card's params and metrics, the
weights as the model artifact, the domain's pyfunc ``predict``) and registers it; the ``champion`` alias
moves to it only where the registered model has no champion yet (or the champion is the same zoo weights
registered without a predict function), so a model a user trained and promoted stays served.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("attention_suite.zoo")

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "zoo"
CARD = "card.json"
PIPELINES = {
    "genomics": "pipelines.genomics:DOMAIN",
    "pointer": "pipelines.pointer:DOMAIN",
    "recommendation": "pipelines.recommendation:DOMAIN",
    "vision": "pipelines.vision:DOMAIN",
}
# what the pyfunc's predict calls, per domain (entries exported before the pipelines named one lack it)
PREDICT = {domain: f"services.{domain}.pyfunc:predict" for domain in ("genomics", "recommendation", "vision")} | {
    "pointer": "services.pointer.solver:predict"
}


def entries(zoo: Path = ZOO) -> list[Path]:
    return sorted(p for p in zoo.iterdir() if (p / CARD).exists()) if zoo.exists() else []


def read_card(entry: Path) -> dict[str, Any]:
    return json.loads((entry / CARD).read_text())


def weights_digest(entry: Path) -> str:
    return hashlib.sha256((entry / "model.safetensors").read_bytes()).hexdigest()[:16]


def shipped_data(card: dict[str, Any]) -> bool:
    """The run's ``--data`` is in this checkout (``data/...``) or there was none (shipped defaults,
    generated data, scikit-learn's bundled digits)."""
    return card["data_arg"] is None or card["data_arg"].startswith("data/")


def remeasure(entry: Path) -> float:
    """The card's headline metric, measured again: the shipped weights on the card's test split."""
    from modelstore.artifacts import load_model, resolve
    from pipelines.common.tracking import metric_name

    card = read_card(entry)
    data = None if card["data_arg"] is None else str(ROOT / card["data_arg"])
    pipeline = resolve(PIPELINES[card["pipeline"]]).pipeline(card["preset"], data)
    metrics = {metric_name(k): v for k, v in pipeline.evaluate(load_model(entry)).metrics.items()}
    return float(metrics[card["headline"]["metric"]])


# ------------------------------------------------------------------------------------------ register
def register(zoo: Path = ZOO) -> list[str]:
    """Register every zoo model that MLflow does not hold yet (matched by its weights' digest)."""
    import mlflow
    from mlflow import MlflowClient

    from modelstore import registry
    from modelstore.artifacts import load_model, read_config
    from pipelines.common.tracking import metric_name, set_experiment, tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    experiment = set_experiment("zoo")
    lines = []
    for entry in entries(zoo):
        card, digest = read_card(entry), weights_digest(entry)
        name = card["name"]
        meta = read_config(entry)
        predict = meta.get("predict") or PREDICT[card["pipeline"]]
        known = client.search_model_versions(f"name = '{name}'")
        same = [v for v in known if (v.tags or {}).get("zoo_digest") == digest]
        mine = [v for v in same if v.tags.get("zoo_predict") == predict]
        # the same weights registered before they carried a predict function: replaced, champion included
        stale = {str(v.version) for v in same} - {str(v.version) for v in mine}
        if mine:
            version = str(mine[0].version)  # MLflow 3 reports it as an int; resolve_version as a str
        else:
            model = load_model(entry)
            with mlflow.start_run(run_name=f"zoo-{name}", experiment_id=experiment.experiment_id):
                mlflow.set_tags({"source": "zoo", "zoo_digest": digest, "registered_model": name})
                mlflow.log_params({"preset": card["preset"], "data": card["data"], "command": card["command"][:500]})
                mlflow.log_metrics({metric_name(f"eval/{k}"): float(v) for k, v in card["metrics"].items()})
                mlflow.log_dict(card, "card.json")
                info = registry.log_model(
                    model, meta["config"], builder=meta["builder"], registered_name=name, predict=predict
                )
            version = info.version
            client.set_model_version_tag(name, version, "zoo_digest", digest)
            client.set_model_version_tag(name, version, "zoo_predict", predict)
        if not registry.has_champion(name) or registry.resolve_version(name).version in stale:
            registry.set_champion(name, version)
        champion = registry.resolve_version(name).version
        served = "champion" if champion == version else f"champion stays v{champion}"
        lines.append(f"{name} v{version} ({served}): {_headline(card)}")
    return lines


# ------------------------------------------------------------------------------------------ export
def export(
    name: str,
    version: str,
    *,
    out: Path,
    command: str,
    headline: str,
    target: str,
    met: bool | None,
    data_licence: str,
    commit: str,
    half: bool = True,
    tolerance: float = 0.005,
    notes: str = "",
    data: str | None = None,
    wall_time_s: int | None = None,
) -> Path:
    """Write registered ``name`` v``version`` (and its run's record) as a zoo entry under ``out``."""
    import mlflow
    import torch
    from mlflow import MlflowClient

    from modelstore.artifacts import find_model_dir, load_model, read_config, save_model
    from pipelines.common.driver import RESUMED
    from pipelines.common.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())  # the store the pipelines wrote to, as register reads it
    client = MlflowClient()
    mv = client.get_model_version(name, version)
    run = client.get_run(mv.run_id)
    local = find_model_dir(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}"))
    meta, model = read_config(local), load_model(local)
    entry = out / name
    shutil.rmtree(entry, ignore_errors=True)
    save_model(entry, model.half() if half else model, meta["config"], meta["builder"], meta.get("predict"))
    # the preset as it last trained: a resume's changes (``--resume --epochs N``) over the logged params
    params = run.data.params | {k.removeprefix(RESUMED): v for k, v in run.data.tags.items() if k.startswith(RESUMED)}
    metrics = {k.removeprefix("eval/"): v for k, v in run.data.metrics.items() if k.startswith("eval/")}
    epochs = client.get_metric_history(run.info.run_id, "train/epoch_loss")
    card = {
        "name": name,
        "version_trained": version,
        "pipeline": run.data.tags.get("domain", ""),
        "preset": params.get("preset.name", ""),
        "data": data or _repo_relative(params.get("data", "")),
        "data_arg": None if params.get("data", "generated") == "generated" else _repo_relative(params["data"]),
        "data_licence": data_licence,
        "split": _split_of(params),
        "command": command,
        "epochs": len({m.step for m in epochs}),
        "wall_time_s": wall_time_s or round(((run.info.end_time or run.info.start_time) - run.info.start_time) / 1000),
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}, " + _how_run(params),
        "metrics": {k: round(float(v), 6) for k, v in sorted(metrics.items())},
        "headline": {
            "metric": headline,
            "value": metrics[headline],
            "target": target,
            "met": met,
            "tolerance": tolerance,
        },
        "dtype": "float16" if half else "float32",
        "date": dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.UTC).strftime("%Y-%m-%d"),
        "commit": commit,
        "mlflow_run": run.info.run_id,
        "notes": notes,
        "preset_params": {k[7:]: v for k, v in sorted(params.items()) if k.startswith("preset.")},
    }
    (entry / CARD).write_text(json.dumps(card, indent=2) + "\n")
    (entry / "README.md").write_text(card_markdown(card))
    return entry


def _how_run(params: dict[str, str]) -> str:
    """Where the training ran, from the run's preset parameters (after ``--workers`` / ``--cpus``)."""
    workers, cpus = int(params.get("preset.workers", "1")), float(params.get("preset.cpus_per_worker", "1"))
    if workers == 0:
        return "in-process (--workers 0, a torch thread per core)"
    return f"{workers} Ray Train worker{'s' * (workers > 1)} × {cpus:g} CPU"


def _repo_relative(path: str) -> str:
    """``/any/checkout/data/x`` → ``data/x`` (cards name shipped data as a clone has it)."""
    return "data/" + path.split("/data/", 1)[1] if "/data/" in path else path


def _split_of(params: dict[str, str]) -> str:
    keys = [k for k in params if any(s in k for s in ("split", "test", "valid", "fold"))]
    return ", ".join(f"{k.removeprefix('preset.')}={params[k]}" for k in sorted(keys)) or "the preset's own split"


def _headline(card: dict[str, Any]) -> str:
    h = card["headline"]
    return f"{h['metric']} {h['value']:.4g} (target {h['target']}: {_verdict(h['met'])})"


def _verdict(met: bool | None) -> str:
    return "no target set" if met is None else "met" if met else "missed"


def card_markdown(card: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {v:.4g} |" for k, v in card["metrics"].items())
    return f"""# {card["name"]}

{card.get("notes") or ""}

| | |
|---|---|
| headline | {_headline(card)} |
| data | `{card["data"]}` ({card["data_licence"]}) |
| split | {card["split"]} |
| preset | `{card["preset"]}` |
| command | `{card["command"]}` |
| epochs | {card["epochs"]} |
| wall time | {card["wall_time_s"]} s |
| machine | {card["machine"]} |
| weights | {card["dtype"]} safetensors |
| date, commit | {card["date"]}, {card["commit"]} |
| MLflow run (training machine) | {card["mlflow_run"]} |

Metrics on the test split (as logged by the run's evaluation):

| metric | value |
|---|---|
{rows}
"""


def table(zoo: Path = ZOO) -> str:
    lines = ["| model | data | headline | target | command |", "|---|---|---|---|---|"]
    for entry in entries(zoo):
        card = read_card(entry)
        h = card["headline"]
        met = "**missed**" if h["met"] is False else _verdict(h["met"])
        lines.append(f"| [`{card['name']}`](zoo/{entry.name}/README.md) | `{card['data']}` | {h['metric']} "
                     f"{h['value']:.4g} | {h['target']} ({met}) | `{card['command']}` |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.zoo", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("register", help="register every zoo model into MLflow (alias champion where none)")
    sub.add_parser("table", help="print the markdown table of the zoo's models")
    e = sub.add_parser("export", help="write a registered model version as a zoo entry")
    e.add_argument("name")
    e.add_argument("--version", required=True)
    e.add_argument("--command", required=True, dest="train_command", help="the exact training command")
    e.add_argument("--headline", required=True, help="the eval metric the card leads with")
    e.add_argument("--target", required=True, help="the target, in words (e.g. '>= 0.97')")
    e.add_argument("--met", choices=["yes", "no", "n/a"], required=True, help="was the target met (n/a: none set)")
    e.add_argument("--data-licence", required=True)
    e.add_argument("--commit", required=True, help="the commit of the code that trained it")
    e.add_argument("--float32", action="store_true", help="keep float32 weights (default float16)")
    e.add_argument("--tolerance", type=float, default=0.005, help="re-measurement tolerance of the headline")
    e.add_argument("--notes", default="")
    e.add_argument(
        "--wall-time-s",
        type=int,
        help="the training's wall time (default: the MLflow run's start to "
        "end, which counts the pause of a run resumed later)",
    )
    e.add_argument("--data", help="the data, as a clone names it (default: the run's --data)")
    e.add_argument("--out", type=Path, default=ZOO)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "register":
        for line in register():
            print(line)
    elif args.command == "table":
        print(table())
    else:
        met = {"yes": True, "no": False}.get(args.met)
        entry = export(
            args.name, args.version, out=args.out, command=args.train_command, headline=args.headline,
            target=args.target, met=met, data_licence=args.data_licence, commit=args.commit,
            half=not args.float32, tolerance=args.tolerance, notes=args.notes, data=args.data,
            wall_time_s=args.wall_time_s,
        )  # fmt: skip
        print(f"wrote {entry}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
