"""A new registered version to promote: the apps' follow-the-champion tests re-register a model as is."""

from __future__ import annotations


def register_copy(name: str, version: str, domain: str) -> str:
    """Log version ``version`` of registered model ``name`` again (same weights and config, a new run in
    ``domain``'s experiment) and return the new version's number; the caller promotes it."""
    import mlflow

    from modelstore import artifacts, registry
    from pipelines.common.tracking import set_experiment

    directory = registry.download_version(name, version)
    model, meta = artifacts.load_model(directory), artifacts.read_config(directory)
    with mlflow.start_run(experiment_id=set_experiment(domain).experiment_id):
        info = registry.log_model(
            model, meta["config"], builder=meta["builder"], registered_name=name, predict=meta.get("predict")
        )
    return info.version
