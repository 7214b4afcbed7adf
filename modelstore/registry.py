"""Models in the MLflow registry: logging (pipelines), resolving an alias and loading (services).

A model is logged as an MLflow pyfunc whose artifacts are our own model directory
(``modelstore.artifacts``): weights in safetensors plus the config that rebuilds the module. So
``mlflow.pyfunc.load_model("models:/<name>@champion").predict(...)`` and ``mlflow models serve`` work
for anyone, and our services load the same artifacts straight into torch. Imports mlflow and torch, never ray.

The pyfunc's ``predict`` calls the function the model config names (``"predict": "package.module:fn"``,
called as ``fn(model, model_input, **params)``). When that module also has ``serving_example(model) ->
(DataFrame, params)``, the model is logged with a signature built from it: one column of any type per
example column (the domain function checks values itself, with errors naming the column and the rule, and
MLflow turns dict and record inputs into a DataFrame for it) and the params with their defaults (MLflow
drops params a signature does not declare), plus the example as the model's input example.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import AnyType, ColSpec, Schema
from torch import nn

from .artifacts import find_model_dir, load_model, read_config, resolve, save_model

log = logging.getLogger(__name__)

PIP_REQUIREMENTS = ["torch==2.14.1", "safetensors", "numpy", "scipy"]


class SuiteModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper: rebuilds the torch module from its artifacts; ``predict`` calls the function the
    model's config names (each domain's request → response function)."""

    def load_context(self, context):
        self.directory = find_model_dir(context.artifacts["model"])
        self.model = load_model(self.directory)
        self.meta = read_config(self.directory)

    def predict(self, context, model_input, params=None):
        if "predict" not in self.meta:
            raise MlflowException(f"model config at {self.directory} names no predict function")
        try:
            return resolve(self.meta["predict"])(self.model, model_input, **(params or {}))
        except ValueError as e:
            raise InvalidInput(str(e)) from e


class InvalidInput(MlflowException, ValueError):
    """A caller's bad input: a ``ValueError`` to Python callers, a 400 with the message (not a stack trace)
    from ``mlflow models serve``."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


@dataclass(frozen=True)
class ModelInfo:
    """Which registered model version a service or comparison is using."""

    name: str
    version: str
    run_id: str | None
    alias: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def log_model(
    model: nn.Module,
    config: dict[str, Any],
    *,
    builder: str,
    registered_name: str,
    predict: str | None = None,
) -> ModelInfo:
    """Log ``model`` to the active MLflow run and register it as a new version of ``registered_name``."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = save_model(Path(tmp) / "model", model, config, builder, predict)
        signature, example = serving_signature(load_model(directory), predict) if predict else (None, None)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=SuiteModel(),
            artifacts={"model": str(directory)},
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=registered_name,
            signature=signature,
            input_example=example,
        )
    run = mlflow.active_run()
    return ModelInfo(registered_name, str(info.registered_model_version), run.info.run_id if run else None)


def serving_signature(model: nn.Module, predict: str) -> tuple[ModelSignature | None, Any]:
    """The signature and input example of a model whose predict function's module has ``serving_example``
    (``(None, None)`` otherwise). The example is run through ``predict`` once, for the output schema.

    ``model`` is the module as the pyfunc will rebuild it (from the saved artifacts: float16 zoo weights
    come back float32, as they will be served)."""
    module = predict.partition(":")[0]
    try:
        example_fn = resolve(f"{module}:serving_example")
    except AttributeError:
        return None, None
    frame, params = example_fn(model)
    output = resolve(predict)(model, frame, **params)
    inferred = infer_signature(frame, output, params or None)
    inputs = Schema([ColSpec(AnyType(), str(column)) for column in frame.columns])
    signature = ModelSignature(inputs=inputs, outputs=inferred.outputs, params=inferred.params)
    return signature, ((frame, params) if params else frame)


def resolve_version(name: str, *, alias: str | None = "champion", version: str | int | None = None) -> ModelInfo:
    """The concrete version behind ``alias`` (or ``version``); ``LookupError`` when there is none."""
    client = MlflowClient()
    try:
        if version is not None:
            mv = client.get_model_version(name, str(version))
        else:
            mv = client.get_model_version_by_alias(name, alias or "champion")
    except MlflowException as e:
        wanted = f"version {version}" if version is not None else f"alias @{alias}"
        raise LookupError(f"registered model {name!r} has no {wanted}") from e
    return ModelInfo(name, str(mv.version), mv.run_id, None if version is not None else alias)


def load_registered(
    name: str, *, alias: str | None = "champion", version: str | int | None = None
) -> tuple[nn.Module, ModelInfo]:
    """Download and rebuild a registered model version (resolved once, so a moving alias cannot
    change it mid-load)."""
    info = resolve_version(name, alias=alias, version=version)
    model = load_model(download_version(name, info.version))
    log.info("loaded %s version %s (run %s)", name, info.version, info.run_id)
    return model, info


def download_version(name: str, version: str) -> Path:
    """The local directory holding a registered version's weights and JSON config (downloaded once)."""
    return find_model_dir(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}"))


def read_registered_config(name: str, version: str) -> dict[str, Any]:
    """The JSON config of a registered version (its builder and model config), without building it."""
    return read_config(download_version(name, version))


def set_champion(name: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(name, "champion", version)


def has_champion(name: str) -> bool:
    try:
        resolve_version(name)
        return True
    except LookupError:
        return False
