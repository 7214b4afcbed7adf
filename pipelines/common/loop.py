"""The loop every Ray Train worker runs (or the driver in-process with ``workers=0``).

Data-parallel training (gradients averaged with one all-reduce of a flat buffer per step), a checkpoint
every epoch (model, optimizer, scheduler, every worker's RNG, epoch, the domain's own state) in the run
storage every node reaches (:mod:`.storage`), resumption from the newest complete checkpoint, metrics
per step and epoch to the MLflow run the driver created (rank 0), a progress line with ETA, and fault
injection for the tests.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .contract import Pipeline
from .progress import Progress
from .storage import STATE_FILE, Storage
from .tracking import metric_name

FAULT_MARKER = "fault-injected"

log = logging.getLogger("attention_suite.train")


def pipeline_from_config(config: dict[str, Any]) -> Pipeline:
    """Rebuild the pipeline a worker runs from the driver's (class, preset class, preset, data)."""
    from modelstore.artifacts import resolve

    preset = resolve(config["preset_class"]).from_dict(config["preset"])
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
    pipeline = pipeline_from_config(config)
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
    else:
        pipeline.begin(model)
    if distributed:
        _broadcast_model(model)

    # no run_id: an untracked in-process run (cross-validation folds, tests)
    client = MlflowClient(config["tracking_uri"]) if rank == 0 and config.get("run_id") else None
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
            pipeline.after_step(model)
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
