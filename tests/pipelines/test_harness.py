"""The training platform on a real Ray cluster and a real MLflow store: data-parallel training,
checkpoints, fault tolerance, resume, MLflow logging, registration and champion promotion."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from mlflow import MlflowClient

from modelstore import registry
from pipelines.common.driver import finish_run, train
from pipelines.common.loop import FAULT_MARKER
from pipelines.common.tracking import storage
from pipelines.pointer import PRESETS, ReinforcePipeline, SupervisedPipeline, registered_name


def test_killed_worker_resumes_and_finishes_every_epoch(trained_tsp):
    assert trained_tsp.epochs_completed == PRESETS["tiny-tsp"].epochs
    store = storage()
    assert store.exists(store.path(trained_tsp.run_name, FAULT_MARKER)), "the fault was never injected"
    history = MlflowClient().get_metric_history(trained_tsp.run_id, "train/epoch_loss")
    assert sorted(m.step for m in history) == [0, 1]  # each epoch logged once, none lost or repeated


def test_run_is_logged_registered_and_promoted(trained_tsp):
    client = MlflowClient()
    run = client.get_run(trained_tsp.run_id)
    assert run.data.params["preset.name"] == "tiny-tsp"
    assert run.data.params["preset.batch_size"] == "32"
    assert "eval/gap_pct" in run.data.metrics and "val/gap_pct" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(trained_tsp.run_id, "plots")}
    assert {"plots/learning_curves.png", "plots/examples.png"} <= artifacts
    tables = {a.path for a in client.list_artifacts(trained_tsp.run_id, "evaluation")}
    assert "evaluation/table.md" in tables
    name = registered_name("tsp", "attention")
    champion = registry.resolve_version(name)
    assert champion.version == trained_tsp.version and champion.run_id == trained_tsp.run_id
    assert run.data.tags["compare/promoted"] == "true"


def test_worse_model_is_registered_but_not_promoted(trained_tsp):
    """A model with zeroed weights points at the first allowed city every step: a much longer tour."""
    pipeline = ReinforcePipeline(PRESETS["tiny-tsp"])
    model = pipeline.build_model()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    import mlflow

    from pipelines.common.tracking import set_experiment

    with mlflow.start_run(experiment_id=set_experiment("pointer").experiment_id) as run:
        pass
    outcome = finish_run(pipeline, model, run.info.run_id, "zeroed", epochs_completed=0)
    assert not outcome.promoted
    assert outcome.champion_before == trained_tsp.version
    assert registry.resolve_version(registered_name("tsp", "attention")).version == trained_tsp.version
    tags = MlflowClient().get_run(run.info.run_id).data.tags
    assert tags["compare/promoted"] == "false" and tags["compare/champion_version"] == trained_tsp.version
    metrics = MlflowClient().get_run(run.info.run_id).data.metrics
    assert metrics["compare/new"] > metrics["compare/champion"]  # gap, lower is better


def test_resume_continues_a_run_from_its_last_checkpoint(ray_cluster):
    one_epoch = dataclasses.replace(PRESETS["tiny-hull"], name="resume-hull", epochs=1)
    first = train(SupervisedPipeline, one_epoch, workers=0)
    assert first.epochs_completed == 1
    second = train(SupervisedPipeline, dataclasses.replace(one_epoch, epochs=3), workers=0, resume=True)
    assert second.run_id == first.run_id and second.run_name == first.run_name
    assert second.epochs_completed == 3
    history = MlflowClient().get_metric_history(first.run_id, "train/epoch_loss")
    assert sorted(m.step for m in history) == [0, 1, 2]
    tags = MlflowClient().get_run(first.run_id).data.tags  # params stay as logged; the change is a tag
    assert tags["resumed/preset.epochs"] == "3" and not any(k.startswith("resumed/preset.lr") for k in tags)
    checkpoints = storage().children(storage().path(first.run_name), "checkpoint_")
    assert len(checkpoints) == 2  # num_to_keep: the two newest survive


def test_resume_without_a_run_fails_clearly(ray_cluster):
    preset = dataclasses.replace(PRESETS["tiny-hull"], name="never-ran")
    with pytest.raises(FileNotFoundError, match="no run to resume"):
        train(SupervisedPipeline, preset, resume=True)


def test_a_job_whose_cpus_cannot_be_had_fails_fast_naming_them(ray_cluster):
    from pipelines.common.driver import wait_for_cpus

    with pytest.raises(RuntimeError, match=r"3 worker\(s\) × 1 CPU = 3 CPUs; the cluster has 2 CPUs"):
        train(ReinforcePipeline, dataclasses.replace(PRESETS["tiny-tsp"], cpus_per_worker=1), workers=3)

    import ray

    @ray.remote(num_cpus=1.5)
    class Holder:
        def ready(self) -> bool:
            return True

    holder = Holder.remote()
    ray.get(holder.ready.remote())
    try:
        with pytest.raises(RuntimeError, match=r"after 2 s only [0-9.]+ of the cluster's 2 CPUs are free"):
            wait_for_cpus(2, 0.5, timeout_s=2)
    finally:
        ray.kill(holder)
