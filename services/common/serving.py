"""Ray Serve building blocks every domain app uses.

* :class:`ModelServer` — the model deployment's base: loads registered models from MLflow
  (``models:/<name>@champion`` unless a version is pinned) when the replica starts, reloads when its
  ``user_config`` names another version, and batches requests with ``@serve.batch``. A domain only
  implements :meth:`ModelServer.process_batch`.
* :func:`create_app` — a FastAPI app with the suite's error shape, a request body limit and OpenAPI
  docs at ``/docs``.
* :func:`call_model` — one request to the model deployment under the per-request timeout: the
  deadline travels with the request (work that outlives it stops, see :mod:`.deadline`), a replica
  that died or is being replaced is retried within the timeout (inference is idempotent), and what
  still cannot be answered is a 503 with ``Retry-After``; 504 when the model itself is too slow.
  :func:`health` and :func:`versions` back every app's ``/healthz`` and ``/version``.
* A replica whose batch has run past ``stuck_after_s`` fails its health check, so Serve replaces it.
* Every ``refresh_s`` (30 s) the model server re-resolves ``@champion`` for the models it follows and
  loads a newly promoted version in the background: training → promotion → served, with no redeploy.
* :func:`bind_model_server` and :func:`ingress_options` — the deployment options every app builder
  derives from its ``args`` (batch size, batch wait, pinned versions, CPU share).

Batching: ``@serve.batch`` never forms batches larger than ``max_ongoing_requests`` of the batched
deployment and of every deployment in front of it, so apps set both to at least the batch size.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError

from modelstore.registry import ModelInfo, load_registered, resolve_version

from .deadline import Deadline, DeadlineExceeded
from .errors import BodyLimitMiddleware, InputError, install_error_handlers

log = logging.getLogger("attention_suite.serving")

DEFAULT_MAX_BATCH = 16
DEFAULT_BATCH_WAIT_S = 0.005
DEFAULT_STUCK_AFTER_S = 60.0
DEFAULT_REFRESH_S = 30.0
RETRY_AFTER_S = 5  # what a 503 tells the client: about the time Serve takes to replace a replica
# The model replica died, is being replaced, or is momentarily full: safe to send the request again.
RETRYABLE = (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError, BackPressureError)


def create_app(title: str, description: str, *, max_body_bytes: int = 1 << 20) -> FastAPI:
    app = FastAPI(title=title, description=description, version="1")
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    return app


class StuckWatch:
    """Fails the health check of a replica whose current batch has run past ``stuck_after_s``."""

    stuck_after_s: float = DEFAULT_STUCK_AFTER_S
    _busy_since: float | None = None

    @contextlib.contextmanager
    def busy(self):
        self._busy_since = time.monotonic()
        try:
            yield
        finally:
            self._busy_since = None

    def check_stuck(self) -> None:
        busy = self._busy_since
        if busy is not None and time.monotonic() - busy > self.stuck_after_s:
            raise RuntimeError(
                f"a batch has run for {time.monotonic() - busy:.0f} s (limit {self.stuck_after_s:g} s): replica stuck"
            )


class ModelServer(StuckWatch, ABC):
    """Base class of a domain's model deployment.

    Args:
        models: ``{key: registered model name}``; each is loaded at start.
        tracking_uri: MLflow tracking URI (default: ``MLFLOW_TRACKING_URI``).
        versions: ``{key: version}`` to pin instead of following ``@champion``.
        threads: torch intra-op threads for this replica.
        stuck_after_s: a batch running longer than this fails the health check (Serve restarts the
            replica); requests carry their own deadline, so only work that ignores it gets here.
        refresh_s: how often to look for a newly promoted champion (0: only on reconfigure).
    ``user_config`` (``reconfigure``): ``{"versions": {key: v}, "max_batch_size": n,
    "batch_wait_timeout_s": s}``; a missing key in ``versions`` means the champion.
    """

    def __init__(
        self,
        models: dict[str, str],
        *,
        tracking_uri: str | None = None,
        versions: dict[str, str] | None = None,
        threads: int = 1,
        stuck_after_s: float = DEFAULT_STUCK_AFTER_S,
        refresh_s: float = DEFAULT_REFRESH_S,
    ):
        import mlflow
        import torch

        torch.set_num_threads(max(1, threads))
        if tracking_uri:
            os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
            mlflow.set_tracking_uri(tracking_uri)
        self.names = dict(models)
        self.pinned: dict[str, str] = dict(versions or {})
        self.models: dict[str, Any] = {}
        self.infos: dict[str, ModelInfo] = {}
        self.loaded_at = time.time()
        self.stuck_after_s = stuck_after_s
        self.deadline = Deadline.never()  # of the batch being processed (one batch at a time)
        self._load_all()
        if refresh_s > 0:
            threading.Thread(target=self._follow_champions, args=(refresh_s,), daemon=True).start()

    # --------------------------------------------------------------------------------- loading
    def _load_all(self) -> None:
        for key, name in self.names.items():
            self._load(key, name, self.pinned.get(key))

    def _load(self, key: str, name: str, version: str | None) -> None:
        model, info = load_registered(name, version=version)
        self.models[key], self.infos[key] = model, info
        log.info("serving %s = %s v%s", key, name, info.version)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply ``user_config``: load pinned versions, follow ``@champion`` for the rest (re-resolved on
        every reconfigure, so redeploying picks up a newly promoted model), retune batching."""
        user_config = user_config or {}
        wanted = {str(k): str(v) for k, v in (user_config.get("versions") or {}).items()}
        unknown = set(wanted) - set(self.names)
        if unknown:
            raise ValueError(f"user_config versions name unknown models {sorted(unknown)}; known {sorted(self.names)}")
        for key, name in self.names.items():
            current = self.infos.get(key)
            version = wanted.get(key) or resolve_version(name).version
            if current is None or current.version != version:
                self._load(key, name, version)
            alias = None if key in wanted else "champion"
            self.infos[key] = dataclasses.replace(self.infos[key], alias=alias)
        self.pinned = wanted
        if "max_batch_size" in user_config:
            self.handle_batch.set_max_batch_size(int(user_config["max_batch_size"]))
        if "batch_wait_timeout_s" in user_config:
            self.handle_batch.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))

    def _follow_champions(self, every_s: float) -> None:
        """Reload a model whose ``@champion`` moved (pinned versions stay); the swap is one assignment,
        so a batch in progress finishes on the model it started with."""
        while True:
            time.sleep(every_s)
            for key, name in self.names.items():
                if key in self.pinned:
                    continue
                try:
                    version = resolve_version(name).version
                    if self.infos[key].version != version:
                        log.info("champion of %s moved to v%s: reloading", name, version)
                        self._load(key, name, version)
                        self.infos[key] = dataclasses.replace(self.infos[key], alias="champion")
                except Exception:  # the registry is briefly unreachable: keep serving, look again later
                    log.exception("could not follow the champion of %s", name)

    def versions(self) -> dict[str, dict[str, Any]]:
        return {key: info.to_dict() for key, info in self.infos.items()}

    def check_health(self) -> None:
        missing = set(self.names) - set(self.models)
        if missing:
            raise RuntimeError(f"models not loaded: {sorted(missing)}")
        self.check_stuck()

    # --------------------------------------------------------------------------------- serving
    @serve.batch(max_batch_size=DEFAULT_MAX_BATCH, batch_wait_timeout_s=DEFAULT_BATCH_WAIT_S)
    async def handle_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Serve's batcher gathers concurrent requests; the work runs off the event loop."""
        return await asyncio.to_thread(self._process_safely, requests)

    def _process_safely(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        start = time.perf_counter()
        # The batch's work may run as long as its last waiting request does.
        walls = [r.pop("deadline", None) for r in requests]
        self.deadline = Deadline.never() if None in walls else Deadline.from_wall_clock(max(walls))
        try:
            with self.busy():
                results = self.process_batch(requests)
        except InputError as e:  # raised for the whole batch: every request gets the error
            error = {"code": e.code, "message": e.message, "field": e.field, "status": e.status}
            return [{"error": error} for _ in requests]
        except DeadlineExceeded as e:
            return [{"error": {"code": "timeout", "message": str(e), "field": None, "status": 504}} for _ in requests]
        elapsed = (time.perf_counter() - start) * 1e3
        for result in results:
            result.setdefault("batch_size", len(requests))
            result.setdefault("compute_ms", elapsed)
        return results

    @abstractmethod
    def process_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Answer a batch of requests, in order; a request that cannot be answered gets
        ``{"error": {"code", "message", "field", "status"}}`` in its place."""


async def call_model(handle, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """One request through the model deployment's batcher within ``timeout_s``.

    The deadline goes with the payload, so the replica abandons work nobody waits for. A replica that
    died or is being replaced is retried (with back-off) until the deadline; if none answered by
    then, :class:`InputError` 503 with ``Retry-After``. A model that is merely slow gives 504. An
    error the model reported for this request is re-raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    payload = {**payload, "deadline": time.time() + timeout_s}
    failure: BaseException | None = None
    pause = 0.1
    while True:
        remaining = deadline - loop.time()
        try:
            if remaining <= 0:
                raise TimeoutError
            result = await asyncio.wait_for(handle.handle_batch.remote(payload), timeout=remaining)
            break
        except TimeoutError:
            if failure is not None:
                raise _unavailable(failure) from None
            raise InputError(f"the request took longer than {timeout_s:g} s", status=504, code="timeout") from None
        except RETRYABLE as e:
            failure = e
            log.warning("model replica unavailable (%s); retrying within the request's timeout", type(e).__name__)
            await asyncio.sleep(max(0.0, min(pause, deadline - loop.time())))
            pause = min(2 * pause, 1.0)
    if "error" in result:
        err = result["error"]
        raise InputError(err["message"], err.get("field"), status=err.get("status", 422), code=err["code"])
    return result


def _unavailable(cause: BaseException) -> InputError:
    return InputError(
        f"the model deployment is unavailable ({type(cause).__name__}); retry after {RETRY_AFTER_S} s",
        status=503,
        code="unavailable",
        retry_after_s=RETRY_AFTER_S,
    )


async def health(handle, timeout_s: float = 5.0, probe: str = "versions") -> dict[str, Any]:
    """``{"status": "ok", "models": ...}`` from the model deployment's ``probe`` method, else 503."""
    try:
        models = await asyncio.wait_for(getattr(handle, probe).remote(), timeout=timeout_s)
    except Exception as e:  # the model deployment is down or stuck
        raise _unavailable(e) from e
    return {"status": "ok", "models": models}


async def versions(handle, timeout_s: float = 5.0) -> dict[str, Any]:
    return (await health(handle, timeout_s))["models"]


def bind_model_server(deployment, models: dict[str, Any], args: dict[str, Any], *, pinned_versions: bool = True):
    """Bind a model deployment from an app builder's ``args`` the same way in every app:
    ``max_batch_size`` (16), ``batch_wait_timeout_s`` (5 ms) and, unless ``pinned_versions`` is off,
    ``versions`` go to its ``user_config`` (so a redeploy that changes them reloads without a restart);
    ``num_cpus`` (0.5) is its CPU share; ``max_ongoing_requests`` stays above the batch size;
    ``stuck_after_s`` (3 × ``request_timeout_s``, at least 30 s) is when a running batch fails the health
    check; ``refresh_s`` (30 s) how often a newly promoted champion is looked for."""
    batch = int(args.get("max_batch_size", DEFAULT_MAX_BATCH))
    user_config: dict[str, Any] = {
        "max_batch_size": batch,
        "batch_wait_timeout_s": float(args.get("batch_wait_timeout_s", DEFAULT_BATCH_WAIT_S)),
    }
    if pinned_versions:
        user_config["versions"] = args.get("versions") or {}
    return deployment.options(
        max_ongoing_requests=max(32, 2 * batch),
        ray_actor_options={"num_cpus": float(args.get("num_cpus", 0.5))},
        user_config=user_config,
    ).bind(
        models,
        tracking_uri=args.get("tracking_uri"),
        stuck_after_s=stuck_after_s(args),
        refresh_s=float(args.get("refresh_s", DEFAULT_REFRESH_S)),
    )


def stuck_after_s(args: dict[str, Any]) -> float:
    return float(args.get("stuck_after_s", max(30.0, 3 * float(args.get("request_timeout_s", 10)))))


def ingress_options(args: dict[str, Any]) -> dict[str, Any]:
    """The ingress's deployment options: enough ongoing requests to fill the model server's batches."""
    return {"max_ongoing_requests": max(64, 4 * int(args.get("max_batch_size", DEFAULT_MAX_BATCH)))}
