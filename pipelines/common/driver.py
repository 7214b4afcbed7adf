"""The driver: start a run, train it on Ray Train, then evaluate, log, register and promote.

:func:`train` creates the MLflow run (params = the whole preset), waits for the CPUs it asks for (or
fails saying what is free), runs :func:`.loop.train_loop` under a ``TorchTrainer`` that restarts a killed
worker group from the last checkpoint, reloads the final state and calls :func:`finish_run`, which
evaluates the model and the current champion on the same evaluation and moves the ``champion`` alias only
when the new model is better (the comparison is logged either way).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .contract import Evaluation, Pipeline, TrainPreset
from .loop import train_loop
from .tracking import (
    flatten_params,
    learning_curves,
    log_figures,
    markdown_table,
    metric_name,
    set_experiment,
    storage,
    suite_home,
    tracking_uri,
)

log = logging.getLogger("attention_suite.train")


@dataclass
class TrainOutcome:
    run_id: str
    run_name: str
    registered_name: str
    version: str
    promoted: bool
    evaluation: Evaluation
    champion_before: str | None
    epochs_completed: int


def qualified_name(obj: Any) -> str:
    """``"module:QualName"`` importable from a worker, also for classes of a ``python -m`` script
    (whose module is ``__main__`` in the driver but its real name everywhere else)."""
    module = obj.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is None:
            raise ValueError(f"{obj.__qualname__} is defined in a script; run it with python -m")
        module = spec.name
    return f"{module}:{obj.__qualname__}"


def train(
    pipeline_cls: type[Pipeline],
    preset: str | TrainPreset,
    *,
    data: str | None = None,
    resume: str | bool = False,
    workers: int | None = None,
    fail_at_epoch: int | None = None,
    promote: bool = True,
) -> TrainOutcome:
    """Train a preset on Ray Train, then evaluate, log, register and (maybe) promote the model."""
    import mlflow
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    preset_obj = pipeline_cls.preset_named(preset) if isinstance(preset, str) else preset
    if workers is not None:
        preset_obj = dataclasses.replace(preset_obj, workers=workers)
    pipeline = pipeline_cls(preset_obj, data)
    experiment = set_experiment(pipeline.domain)
    store = storage()

    if resume:
        run_name = resume if isinstance(resume, str) else store.latest_run(f"{pipeline.domain}-{preset_obj.name}-")
        info = store.read_run_info(run_name) if run_name else None
        if info is None:
            wanted = f"{pipeline.domain}/{preset_obj.name}"
            raise FileNotFoundError(f"no run to resume for {wanted} (looked for {run_name} in {store.uri})")
        run_id = info["run_id"]
        log.info("resuming run %s (MLflow run %s)", run_name, run_id)
        _tag_resumed_changes(run_id, info["preset"], preset_obj.to_dict())
    else:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        run_name = f"{pipeline.domain}-{preset_obj.name}-{stamp}"
        with mlflow.start_run(run_name=run_name, experiment_id=experiment.experiment_id) as run:
            run_id = run.info.run_id
            mlflow.log_params(flatten_params({"preset": preset_obj.to_dict(), "data": data or "generated"}))
            mlflow.set_tags({"domain": pipeline.domain, "registered_model": pipeline.registered_name})
        store.write_run_info(run_name, {"run_id": run_id, "preset": preset_obj.to_dict(), "data": data})

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=True)
    if preset_obj.workers:
        wait_for_cpus(preset_obj.workers, preset_obj.cpus_per_worker)
    config = {
        "pipeline": qualified_name(pipeline_cls),
        "preset": preset_obj.to_dict(),
        "preset_class": qualified_name(type(preset_obj)),
        "data": data,
        "run_id": run_id,
        "run_name": run_name,
        "storage_uri": store.uri,
        "local": preset_obj.workers == 0,
        "tracking_uri": tracking_uri(),
        "threads": max(1, int(preset_obj.cpus_per_worker)) if preset_obj.workers else torch.get_num_threads(),
        "fail_at_epoch": fail_at_epoch,
    }
    env = {"ATTENTION_SUITE_HOME": str(suite_home()), "MLFLOW_TRACKING_URI": tracking_uri()}
    env.update({k: v for k, v in os.environ.items() if k.startswith("AWS_")})  # object-store credentials
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=preset_obj.workers, resources_per_worker={"CPU": preset_obj.cpus_per_worker}
        ),
        run_config=RunConfig(
            name=run_name,
            **store.ray_train_storage(),
            failure_config=FailureConfig(max_failures=3),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            worker_runtime_env={"env_vars": env},
        ),
    )
    trainer.fit()
    state = store.latest_state(run_name)
    if state is None:
        raise RuntimeError(f"training {run_name} finished without a checkpoint in {store.path(run_name)}")
    model = final_model(pipeline, state)
    return finish_run(pipeline, model, run_id, run_name, epochs_completed=state["epoch"] + 1, promote=promote)


RESUMED = "resumed/"  # tag prefix: a preset parameter that a resume changed (``--epochs`` extends a run)


def _tag_resumed_changes(run_id: str, before: dict[str, Any], now: dict[str, Any]) -> None:
    """MLflow params cannot change, so a resume that changes the preset records each change as a tag
    ``resumed/preset.<field>`` = the value it now trains with."""
    from mlflow import MlflowClient
    from mlflow.entities import RunTag

    old, new = flatten_params({"preset": before}), flatten_params({"preset": now})
    changed = {k: v for k, v in new.items() if old.get(k) != v}
    for key, value in changed.items():
        log.info("resume changes %s: %s -> %s", key, old.get(key), value)
    if changed:
        tags = [RunTag(f"{RESUMED}{key}", value) for key, value in changed.items()]
        MlflowClient(tracking_uri()).log_batch(run_id, tags=tags)


def final_model(pipeline: Pipeline, state: dict[str, Any]) -> nn.Module:
    """The trained model from a run's last checkpoint state, as the pipeline finalises it, in eval mode."""
    model = pipeline.build_model()
    model.load_state_dict(state["model"])
    pipeline.load_state_dict(state["pipeline"])
    pipeline.finalize(model)
    return model.eval()


RESOURCE_WAIT_S = float(os.environ.get("ATTENTION_SUITE_RESOURCE_WAIT_S", "120"))


def wait_for_cpus(workers: int, cpus_per_worker: float, timeout_s: float = RESOURCE_WAIT_S) -> None:
    """Wait until the cluster can place ``workers`` × ``cpus_per_worker`` CPUs, and fail with what was
    asked and what is free when it never can or not within ``timeout_s`` (Ray Train would wait forever)."""
    import ray

    wanted = workers * cpus_per_worker
    asked = f"{workers} worker(s) × {cpus_per_worker:g} CPU = {wanted:g} CPUs"
    nodes = [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")]
    total = sum(nodes)
    if wanted > total + 1e-9 or cpus_per_worker > max(nodes, default=0.0) + 1e-9:
        raise RuntimeError(
            f"the job asks for {asked}; the cluster has {total:g} CPUs in all (largest node {max(nodes, default=0):g}):"
            " lower --workers or --cpus"
        )
    start = time.monotonic()
    while (free := ray.available_resources().get("CPU", 0.0)) + 1e-9 < wanted:
        if time.monotonic() - start > timeout_s:
            raise RuntimeError(
                f"the job asks for {asked}; after {timeout_s:g} s only {free:g} of the cluster's {total:g} CPUs"
                " are free (served apps and other jobs hold the rest): lower --workers or --cpus, or free the cluster"
            )
        log.info("waiting for %s (%g of %g CPUs free)", asked, free, total)
        time.sleep(5)


def finish_run(
    pipeline: Pipeline,
    model: nn.Module,
    run_id: str,
    run_name: str,
    *,
    epochs_completed: int,
    promote: bool = True,
) -> TrainOutcome:
    """Evaluate, log everything, register, compare with the champion and move the alias if better."""
    import mlflow

    from modelstore import registry

    log.info("evaluating %s", run_name)
    evaluation = pipeline.evaluate(model)
    name = pipeline.registered_name
    champion_before, champion_eval = None, None
    try:
        champion_model, champion_info = registry.load_registered(name)
        champion_before = champion_info.version
        champion_eval = pipeline.evaluate(champion_model)
    except LookupError:
        pass

    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({metric_name(f"eval/{k}"): float(v) for k, v in evaluation.metrics.items()})
        if evaluation.table:
            columns = {key: [row.get(key) for row in evaluation.table] for key in evaluation.table[0]}
            mlflow.log_table(columns, artifact_file="evaluation/table.json")
            mlflow.log_text(markdown_table(evaluation.table), "evaluation/table.md")
        log_figures({**learning_curves(run_id), **evaluation.figures})
        registered = registry.log_model(
            model,
            pipeline.model_config(),
            builder=pipeline.builder,
            registered_name=name,
            predict=pipeline.predict,
        )
        better = champion_eval is None or evaluation.better_than(champion_eval)
        promoted = bool(promote and better)
        comparison = {"compare/new": evaluation.score()}
        if champion_eval is not None:
            comparison["compare/champion"] = champion_eval.score()
        mlflow.log_metrics(comparison)
        direction = "higher" if evaluation.higher_is_better else "lower"
        mlflow.set_tags(
            {
                "compare/metric": f"{evaluation.primary} ({direction} is better)",
                "compare/champion_version": champion_before or "none",
                "compare/promoted": str(promoted).lower(),
                "registered_version": registered.version,
            }
        )
        if promoted:
            registry.set_champion(name, registered.version)
    verdict = "promoted to champion" if promoted else f"kept champion v{champion_before}"
    log.info("%s v%s: %s = %.4f, %s", name, registered.version, evaluation.primary, evaluation.score(), verdict)
    return TrainOutcome(
        run_id,
        run_name,
        pipeline.registered_name,
        registered.version,
        promoted,
        evaluation,
        champion_before,
        epochs_completed,
    )
