"""The ingress's side of every domain app (the model deployment's side is :mod:`.serving`).

* :func:`create_app` — a FastAPI app with the suite's error shape, a request body limit and OpenAPI
  docs at ``/docs``.
* :class:`ModelIngress` — the ingress deployment's base: the model server's handle, the per-request
  timeout and :meth:`ModelIngress.call`; :func:`model_routes` gives an ingress class the routes every
  app has: ``GET /healthz``, ``/version`` and ``/models``.
* :func:`call_model` — one request to the model deployment under the per-request timeout: the
  deadline travels with the request (work that outlives it stops, see :mod:`.deadline`), a replica
  that died or is being replaced is retried within the timeout (inference is idempotent), and what
  still cannot be answered is a 503 with ``Retry-After``; 504 when the model itself is too slow.
* :func:`ingress_options` — the ingress's deployment options, from the app builder's ``args``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from fastapi import FastAPI
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError

from .docs import serve_docs
from .errors import ERROR_RESPONSES, BodyLimitMiddleware, InputError, install_error_handlers
from .serving import DEFAULT_MAX_BATCH, Message, Refusal

log = logging.getLogger("attention_suite.serving")

RETRY_AFTER_S = 5  # what a 503 tells the client: about the time Serve takes to replace a replica
# The model replica died, is being replaced, or is momentarily full: safe to send the request again.
RETRYABLE = (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError, BackPressureError)


def create_app(title: str, description: str, *, max_body_bytes: int = 1 << 20) -> FastAPI:
    app = FastAPI(title=title, description=description, version="1")
    serve_docs(app)  # Swagger UI from the package's assets: /docs works offline
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    return app


class ModelIngress:
    """Base of every app's ingress deployment: ``server`` is the model deployment's handle."""

    def __init__(self, server, *, request_timeout_s: float):
        self.server, self.timeout_s = server, request_timeout_s

    async def call(self, message: Message, *, model: str | None = None) -> dict[str, Any]:
        """``message`` through the model server within the request timeout; ``model`` routes it to a
        replica holding that model (multiplexed apps)."""
        handle = self.server if model is None else self.server.options(multiplexed_model_id=model)
        return await call_model(handle, message, self.timeout_s)


def model_routes(app: FastAPI):
    """Class decorator for an ingress (a :class:`ModelIngress`), placed under ``@serve.ingress(app)``:
    adds to ``app`` the routes every app has, answered by the model server's ``versions`` and
    ``describe``:

        GET /healthz   {"status": "ok", "models": {key: {name, version, run_id, alias}}}, else 503
        GET /version   {key: {name, version, run_id, alias}}
        GET /models    {key: {name, version, run_id, alias, ...details}}

    The routes are functions of the decorated class (by qualified name), so Serve's class-based view
    hands them the ingress instance, as it does the class's own routes."""

    def decorate(cls: type) -> type:
        async def healthz(self) -> dict[str, Any]:
            """Liveness of the app and the model deployment."""
            return await health(self.server)

        async def version(self) -> dict[str, Any]:
            """The registered model name, version and training run behind each endpoint."""
            return await _ask(self.server, "versions")

        async def list_models(self) -> dict[str, Any]:
            """The served models: registry entry (name, version, run), architecture, inputs, labels."""
            return await _ask(self.server, "describe")

        for path, route in (("/healthz", healthz), ("/version", version), ("/models", list_models)):
            route.__qualname__ = f"{cls.__qualname__}.{route.__name__}"
            setattr(cls, route.__name__, route)
            app.get(path, responses=ERROR_RESPONSES)(route)
        return cls

    return decorate


async def call_model(handle, message: Message, timeout_s: float) -> dict[str, Any]:
    """One request through the model deployment's batcher within ``timeout_s``.

    The deadline goes with the message, so the replica abandons work nobody waits for. A replica that
    died or is being replaced is retried (with back-off) until the deadline; if none answered by
    then, :class:`InputError` 503 with ``Retry-After``. A model that is merely slow gives 504. A
    :class:`Refusal` the model returned for this request is raised as its :class:`InputError`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    message = dataclasses.replace(message, deadline=time.time() + timeout_s)
    failure: BaseException | None = None
    pause = 0.1
    while True:
        remaining = deadline - loop.time()
        try:
            if remaining <= 0:
                raise TimeoutError
            result = await asyncio.wait_for(handle.handle_batch.remote(message), timeout=remaining)
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
    if isinstance(result, Refusal):
        raise result.error()
    return result


def _unavailable(cause: BaseException) -> InputError:
    return InputError(
        f"the model deployment is unavailable ({type(cause).__name__}); retry after {RETRY_AFTER_S} s",
        status=503,
        code="unavailable",
        retry_after_s=RETRY_AFTER_S,
    )


async def _ask(handle, method: str, timeout_s: float = 10.0) -> Any:
    """A model server method (``versions``, ``describe``), or 503 when the deployment is down or stuck."""
    try:
        return await asyncio.wait_for(getattr(handle, method).remote(), timeout=timeout_s)
    except Exception as e:
        raise _unavailable(e) from e


async def health(handle, timeout_s: float = 10.0) -> dict[str, Any]:
    """``{"status": "ok", "models": ...}`` from the model deployment's ``versions``, else 503."""
    return {"status": "ok", "models": await _ask(handle, "versions", timeout_s)}


def ingress_options(args: dict[str, Any]) -> dict[str, Any]:
    """The ingress's deployment options: enough ongoing requests to fill the model server's batches."""
    return {"max_ongoing_requests": max(64, 4 * int(args.get("max_batch_size", DEFAULT_MAX_BATCH)))}
