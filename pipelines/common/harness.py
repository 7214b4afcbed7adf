"""The training harness on Ray Train, shared by every domain.

A domain subclasses :class:`Pipeline` and gives: presets, how to build the model, its training batches
for each worker, one loss step, optional end-of-epoch work (validation, baselines), and an evaluation.
The harness does the rest:

* data-parallel training on Ray Train (``TorchTrainer``, CPU workers with fractional CPUs, gradients
  averaged with one all-reduce per step);
* a checkpoint every epoch (model, optimizer, scheduler, every worker's RNG, epoch, the domain's own
  state) in the run storage every node reaches (:mod:`.storage`: a path, a shared mount or an object
  store); ``resume`` continues a run by name; a ``FailureConfig`` restarts a killed worker group from
  the last checkpoint, read back through that storage;
* rank 0 logs metrics per step and epoch to one MLflow run that the driver created (params = the whole
  preset) and shows progress with ETA;
* the driver then evaluates the final model, logs the evaluation table, learning curves and the
  domain's figures, registers the model, evaluates the current champion on the same evaluation, and
  moves the ``champion`` alias only when the new model is better (the comparison is logged either way).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import random
import re
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .progress import Progress
from .storage import STATE_FILE, Storage, storage_uri

FAULT_MARKER = "fault-injected"

log = logging.getLogger("attention_suite.train")


# ------------------------------------------------------------------------------ what a domain gives
@dataclass
class TrainPreset:
    """Hyperparameters shared by every domain; domains subclass it with their own fields."""

    name: str = "tiny"
    epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    seed: int = 0
    workers: int = 2
    cpus_per_worker: float = 0.5
    log_every: int = 10

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Evaluation:
    """The result of evaluating one model: metrics, which one decides promotion, a table, figures."""

    metrics: dict[str, float]
    primary: str
    higher_is_better: bool
    table: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)  # artifact name -> matplotlib figure

    def score(self) -> float:
        return float(self.metrics[self.primary])

    def better_than(self, other: Evaluation) -> bool:
        return self.score() > other.score() if self.higher_is_better else self.score() < other.score()


class Pipeline(ABC):
    """A domain's training recipe. Instances are rebuilt inside every worker from (class, preset, data)."""

    domain: ClassVar[str]
    presets: ClassVar[dict[str, TrainPreset]]
    builder: ClassVar[str]  # "package.module:function" rebuilding the model from model_config()
    predict: ClassVar[str | None] = None  # request -> response function for the pyfunc wrapper

    def __init__(self, preset: TrainPreset, data: str | None = None):
        self.preset = preset
        self.data = data

    @classmethod
    def preset_named(cls, name: str) -> TrainPreset:
        try:
            return cls.presets[name]
        except KeyError:
            raise ValueError(f"unknown preset {name!r} for {cls.domain}; known: {', '.join(cls.presets)}") from None

    @property
    @abstractmethod
    def registered_name(self) -> str:
        """The model's name in the MLflow registry."""

    @abstractmethod
    def model_config(self) -> dict[str, Any]:
        """The JSON config ``builder`` rebuilds the model from."""

    def build_model(self) -> nn.Module:
        from services.common.artifacts import resolve

        return resolve(self.builder)(self.model_config())

    @abstractmethod
    def steps_per_epoch(self, world_size: int) -> int:
        """Optimizer steps per epoch on each worker."""

    @abstractmethod
    def train_batches(self, epoch: int, rank: int, world_size: int) -> Iterable[Any]:
        """This worker's batches for ``epoch`` (deterministic in epoch and rank, so resuming repeats them)."""

    @abstractmethod
    def train_step(self, model: nn.Module, batch: Any) -> dict[str, Any]:
        """Forward one batch; return ``{"loss": tensor, **scalar metrics}``."""

    def end_epoch(self, model: nn.Module, epoch: int) -> dict[str, float]:
        """Work after each epoch on every worker (validation, baseline updates); returns metrics."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Domain training state to checkpoint beyond model and optimizer (e.g. an RL baseline)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore :meth:`state_dict`."""

    def should_stop(self) -> bool:
        """Early stopping: checked on every worker after :meth:`end_epoch` (must agree across workers)."""
        return False

    def finalize(self, model: nn.Module) -> None:  # noqa: B027 - optional hook
        """Adjust the final model before evaluation (e.g. load the best epoch's weights)."""

    def build_optimizer(self, model: nn.Module, total_steps: int):
        """AdamW with linear warm-up then cosine decay to 10% of the peak rate."""
        p = self.preset
        optimizer = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        warmup = max(0, p.warmup_steps)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * progress))

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    @abstractmethod
    def evaluate(self, model: nn.Module) -> Evaluation:
        """Evaluate a trained model on the held-out set the champion comparison uses."""


# ----------------------------------------------------------------------------------------- locations
def suite_home() -> Path:
    """Where runs, checkpoints and the default MLflow store live (``ATTENTION_SUITE_HOME``)."""
    home = Path(os.environ.get("ATTENTION_SUITE_HOME", Path.home() / ".attention-suite")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a sqlite store in :func:`suite_home`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{suite_home() / 'mlflow.db'}"


def storage() -> Storage:
    """The run storage (``ATTENTION_SUITE_STORAGE``, default ``<home>/ray_results``)."""
    return Storage.from_uri(storage_uri(suite_home()))


def set_experiment(name: str):
    """Create (with local artifacts next to a sqlite store) or select the experiment ``name``."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    if mlflow.get_experiment_by_name(name) is None:
        location = None
        if tracking_uri().startswith("sqlite:"):
            location = (suite_home() / "mlartifacts" / name).as_uri()
        try:
            mlflow.create_experiment(name, artifact_location=location)
        except Exception:  # created concurrently by another process
            if mlflow.get_experiment_by_name(name) is None:
                raise
    return mlflow.set_experiment(name)


# ----------------------------------------------------------------------------------------- the worker loop
def metric_name(key: str) -> str:
    """MLflow accepts letters, digits and ``_-. :/`` in metric names: ``HR@10`` becomes ``HR_at_10``."""
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", key.replace("@", "_at_"))


def _flatten_preset(preset: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in preset.items():
        if isinstance(value, dict):
            flat.update(_flatten_preset(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def _pipeline_from_config(config: dict[str, Any]) -> Pipeline:
    from services.common.artifacts import resolve

    preset = resolve(config["preset_class"])(**config["preset"])
    return resolve(config["pipeline"])(preset, config.get("data"))


def _rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - the global state is what we save
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])


def _sync_gradients(model: nn.Module, world_size: int) -> None:
    """Average gradients across workers with a single all-reduce of one flat buffer."""
    import torch.distributed as dist

    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world_size
    for g, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
        g.copy_(synced)


def _broadcast_model(model: nn.Module) -> None:
    import torch.distributed as dist

    for tensor in model.state_dict().values():
        dist.broadcast(tensor, src=0)


def train_loop(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker (or in-process with ``workers=0``)."""
    import ray.train
    import torch.distributed as dist
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    distributed = world > 1 and dist.is_available() and dist.is_initialized()
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    pipeline = _pipeline_from_config(config)
    preset = pipeline.preset
    seed = preset.seed * 1000 + rank
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - code we call may use the global generator
    random.seed(seed)

    model = pipeline.build_model()
    steps = pipeline.steps_per_epoch(world)
    optimizer, scheduler = pipeline.build_optimizer(model, steps * preset.epochs)
    start_epoch, global_step = 0, 0
    state = None
    store = Storage.from_uri(config["storage_uri"])
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = torch.load(Path(directory) / STATE_FILE, weights_only=False)
    stored = store.latest_state(config["run_name"])
    if stored is not None and (state is None or stored["epoch"] > state["epoch"]):
        # A worker died right after a checkpoint was written but before Ray Train registered it:
        # the files are complete, so continue from them rather than redo the epoch.
        state = stored
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        pipeline.load_state_dict(state["pipeline"])
        rng = state["rng"]
        _set_rng_state(rng[rank] if rank < len(rng) else rng[0])
        start_epoch, global_step = state["epoch"] + 1, state["global_step"]
        if rank == 0:
            log.info("resuming %s at epoch %d (step %d)", config["run_name"], start_epoch, global_step)
    if distributed:
        _broadcast_model(model)

    client = MlflowClient(config["tracking_uri"]) if rank == 0 else None
    run_id = config["run_id"]

    def log_metrics(metrics: dict[str, float], step: int) -> None:
        if client is None or not metrics:
            return
        now = int(time.time() * 1000)
        batch = [Metric(metric_name(k), float(v), now, step) for k, v in metrics.items() if np.isfinite(float(v))]
        client.log_batch(run_id, metrics=batch)

    progress = Progress(steps * (preset.epochs - start_epoch), f"{pipeline.domain}/{preset.name}", every_s=15)
    for epoch in range(start_epoch, preset.epochs):
        if pipeline.should_stop():  # resumed after an early stop
            break
        model.train()
        losses, extras = [], {}
        for batch in pipeline.train_batches(epoch, rank, world):
            out = pipeline.train_step(model, batch)
            loss = out["loss"]
            optimizer.zero_grad(set_to_none=False)
            loss.backward()
            if distributed:
                _sync_gradients(model, world)
            if preset.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), preset.grad_clip)
            optimizer.step()
            scheduler.step()
            global_step += 1
            losses.append(float(loss.detach()))
            for key, value in out.items():
                if key != "loss":
                    extras.setdefault(key, []).append(float(value))
            if rank == 0:
                progress.update(epoch=epoch, loss=losses[-1])
                if global_step % preset.log_every == 0:
                    step_metrics = {"train/loss": losses[-1], "train/lr": scheduler.get_last_lr()[0]}
                    step_metrics.update({f"train/{k}": v[-1] for k, v in extras.items()})
                    log_metrics(step_metrics, global_step)
        model.eval()
        if distributed:  # batch-norm statistics differ per worker: evaluate and save rank 0's everywhere
            _broadcast_model(model)
        metrics = {
            "epoch": float(epoch),
            "train/epoch_loss": float(np.mean(losses)) if losses else float("nan"),
        }
        metrics.update({f"train/epoch_{k}": float(np.mean(v)) for k, v in extras.items()})
        metrics.update(pipeline.end_epoch(model, epoch))
        log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, epoch)

        rng_states = [_rng_state()]
        if distributed:
            rng_states = [None] * world
            dist.all_gather_object(rng_states, _rng_state())
        with tempfile.TemporaryDirectory() as directory:
            report_checkpoint = None
            if rank == 0:
                state = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "pipeline": pipeline.state_dict(),
                    "rng": rng_states,
                    "epoch": epoch,
                    "global_step": global_step,
                    "preset": preset.to_dict(),
                }
                if config["local"]:  # local mode keeps checkpoints in memory only: persist them here
                    store.save_state(config["run_name"], state)
                else:
                    torch.save(state, Path(directory) / STATE_FILE)
                    report_checkpoint = ray.train.Checkpoint.from_directory(directory)
            ray.train.report(metrics, checkpoint=report_checkpoint)
        _maybe_fail(config, store, epoch, rank, world)
        if pipeline.should_stop():
            if rank == 0:
                log.info("early stopping after epoch %d", epoch)
            break
    progress.close()


def _maybe_fail(config: dict[str, Any], store: Storage, epoch: int, rank: int, world: int) -> None:
    """Fault injection for tests: the last worker dies once, right after epoch ``fail_at_epoch`` (the
    marker that says it did lives in the run storage, so a worker on any node sees it)."""
    if config.get("fail_at_epoch") != epoch or rank != world - 1:
        return
    marker = store.path(config["run_name"], FAULT_MARKER)
    if store.exists(marker):
        return
    store.write_bytes(marker, f"killed rank {rank} after epoch {epoch}\n".encode())
    log.warning("fault injection: killing worker rank %d after epoch %d", rank, epoch)
    os._exit(1)


# ----------------------------------------------------------------------------------------- the driver
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
    else:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        run_name = f"{pipeline.domain}-{preset_obj.name}-{stamp}"
        with mlflow.start_run(run_name=run_name, experiment_id=experiment.experiment_id) as run:
            run_id = run.info.run_id
            mlflow.log_params(_flatten_preset({"preset": preset_obj.to_dict(), "data": data or "generated"}))
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
    model = pipeline.build_model()
    model.load_state_dict(state["model"])
    pipeline.load_state_dict(state["pipeline"])
    pipeline.finalize(model)
    model.eval()
    return finish_run(pipeline, model, run_id, run_name, epochs_completed=state["epoch"] + 1, promote=promote)


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

    from services.common import registry

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


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])

    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row.get(k, "")) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def log_figures(figures: dict[str, Any]) -> None:
    """Log each figure to the active MLflow run under ``plots/`` and close it (pyplot keeps every figure
    alive until closed)."""
    import matplotlib.pyplot as plt
    import mlflow

    for artifact, figure in figures.items():
        mlflow.log_figure(figure, f"plots/{artifact}")
        plt.close(figure)


def learning_curves(run_id: str) -> dict[str, Any]:
    """One figure of every logged train/ and val/ metric against its step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mlflow import MlflowClient

    client = MlflowClient()
    keys = sorted(k for k in client.get_run(run_id).data.metrics if k.startswith(("train/", "val/")))
    if not keys:
        return {}
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        ax.plot([m.step for m in history], [m.value for m in history], marker="." if len(history) < 50 else None)
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step (train/*: optimizer steps; epoch metrics: epochs)")
    fig.tight_layout()
    return {"learning_curves.png": fig}
