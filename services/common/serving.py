"""The model deployment's side of every domain app (the ingress's side is :mod:`.ingress`).

* :class:`ModelServer` — the model deployment's base: loads registered models from MLflow
  (``models:/<name>@champion`` unless a version is pinned) when the replica starts (or, with
  ``on_demand``, on a model's first request: apps that multiplex models), reloads when its
  ``user_config`` names another version, and batches requests with ``@serve.batch``. A domain only
  implements :meth:`ModelServer.process_batch` (and :meth:`ModelServer.details` for ``/models``).
* Requests arrive as :class:`Message` dataclasses (one per kind of request, defined by the domain); an
  answer is the response body as a dict, or a :class:`Refusal` in its place.
* A replica whose batch has run past ``stuck_after_s`` fails its health check, so Serve replaces it.
* Every ``refresh_s`` (30 s) the model server re-resolves ``@champion`` for the models it follows and
  loads a newly promoted version in the background: training → promotion → served, with no redeploy.
* :func:`bind_model_server` — the model deployment's options every app builder derives from its
  ``args`` (batch size, batch wait, pinned versions, CPU share).

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
from dataclasses import dataclass
from typing import Any

from ray import serve

from modelstore.registry import ModelInfo, load_registered, resolve_version

from .deadline import Deadline, DeadlineExceeded
from .errors import InputError

log = logging.getLogger("attention_suite.serving")

DEFAULT_MAX_BATCH = 16
DEFAULT_BATCH_WAIT_S = 0.005
DEFAULT_STUCK_AFTER_S = 60.0
DEFAULT_REFRESH_S = 30.0


@dataclass(kw_only=True)
class Message:
    """Base of the requests an ingress sends its model server: ``deadline`` (a ``time.time()``) is set
    by :func:`services.common.ingress.call_model` and bounds the batch the request lands in."""

    deadline: float | None = None


@dataclass(frozen=True)
class Refusal:
    """A request the model server cannot answer, in its place among the batch's answers; the ingress
    raises it as the :class:`InputError` it describes."""

    message: str
    field: str | None = None
    status: int = 422
    code: str = "invalid_request"

    @classmethod
    def of(cls, error: InputError) -> Refusal:
        return cls(error.message, error.field, error.status, error.code)

    def error(self) -> InputError:
        return InputError(self.message, self.field, status=self.status, code=self.code)


Answer = dict[str, Any] | Refusal


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

    With ``on_demand`` (a class attribute) no model loads at start: :meth:`ensure_loaded` loads one on
    its first request and :meth:`unload` drops it (a multiplexing app calls them from its
    ``@serve.multiplexed`` loader); pinning, champion following and ``/version`` cover the resident ones,
    and ``/version`` reports the version a model not yet loaded would get.
    """

    on_demand: bool = False

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
        self._lock = threading.Lock()  # loads and unloads of the follower thread and of requests
        if not self.on_demand:
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

    def ensure_loaded(self, key: str) -> tuple[Any, ModelInfo]:
        """Model ``key`` and its version, loaded first (the pinned version, else the champion) unless
        resident."""
        with self._lock:
            if key not in self.models:
                self._load(key, self.names[key], self.pinned.get(key))
                if key not in self.pinned:
                    self.infos[key] = dataclasses.replace(self.infos[key], alias="champion")
            return self.models[key], self.infos[key]

    def unload(self, key: str) -> None:
        with self._lock:
            self.models.pop(key, None)
            self.infos.pop(key, None)
            log.info("unloaded %s", key)

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
            if current is None and self.on_demand:  # loads with the wanted version when first asked for
                continue
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
                if key in self.pinned or key not in self.infos:  # pinned, or not resident (on demand)
                    continue
                try:
                    version = resolve_version(name).version
                    with self._lock:
                        if key in self.infos and self.infos[key].version != version:
                            log.info("champion of %s moved to v%s: reloading", name, version)
                            self._load(key, name, version)
                            self.infos[key] = dataclasses.replace(self.infos[key], alias="champion")
                except Exception:  # the registry is briefly unreachable: keep serving, look again later
                    log.exception("could not follow the champion of %s", name)

    def versions(self) -> dict[str, dict[str, Any]]:
        """``GET /version``: ``{key: {name, version, run_id, alias}}`` of each served model (for one not
        loaded yet, the version it would load; ``{name, error}`` when the registry has none)."""
        out: dict[str, dict[str, Any]] = {}
        for key, name in self.names.items():
            info = self.infos.get(key)
            if info is None:
                try:
                    info = resolve_version(name, version=self.pinned.get(key))
                except LookupError as e:
                    out[key] = {"name": name, "error": str(e)}
                    continue
            out[key] = info.to_dict()
        return out

    def describe(self) -> dict[str, dict[str, Any]]:
        """``GET /models``: :meth:`versions` with each model's :meth:`details`."""
        out = self.versions()
        for key, entry in out.items():
            if "error" not in entry:
                entry.update(self.details(key, entry["version"]))
        return out

    def details(self, key: str, version: str) -> dict[str, Any]:
        """What ``/models`` says about model ``key`` besides its registry entry (architecture, inputs, labels)."""
        return {}

    def check_health(self) -> None:
        missing = set() if self.on_demand else set(self.names) - set(self.models)
        if missing:
            raise RuntimeError(f"models not loaded: {sorted(missing)}")
        self.check_stuck()

    # --------------------------------------------------------------------------------- serving
    @serve.batch(max_batch_size=DEFAULT_MAX_BATCH, batch_wait_timeout_s=DEFAULT_BATCH_WAIT_S)
    async def handle_batch(self, requests: list[Message]) -> list[Answer]:
        """Serve's batcher gathers concurrent requests; the work runs off the event loop."""
        await self.before_batch(requests)
        return await asyncio.to_thread(self._process_safely, requests)

    async def before_batch(self, requests: list[Message]) -> None:
        """Runs on the event loop before the batch's work (a multiplexing app loads its model here)."""

    def _process_safely(self, requests: list[Message]) -> list[Answer]:
        start = time.perf_counter()
        # The batch's work may run as long as its last waiting request does.
        walls = [r.deadline for r in requests]
        self.deadline = Deadline.never() if None in walls else Deadline.from_wall_clock(max(walls))
        try:
            with self.busy():
                results = self.process_batch(requests)
        except InputError as e:  # raised for the whole batch: every request gets the error
            return [Refusal.of(e) for _ in requests]
        except DeadlineExceeded as e:
            return [Refusal(str(e), status=504, code="timeout") for _ in requests]
        elapsed = (time.perf_counter() - start) * 1e3
        for result in results:
            if isinstance(result, dict):
                result.setdefault("batch_size", len(requests))
                result.setdefault("compute_ms", elapsed)
        return results

    @abstractmethod
    def process_batch(self, requests: list[Message]) -> list[Answer]:
        """Answer a batch of requests, in order; a request that cannot be answered gets a
        :class:`Refusal` in its place."""


def bind_model_server(deployment, models: dict[str, Any], args: dict[str, Any]):
    """Bind a model deployment from an app builder's ``args`` the same way in every app:
    ``max_batch_size`` (16), ``batch_wait_timeout_s`` (5 ms) and ``versions`` go to its ``user_config``
    (so a redeploy that changes them reloads without a restart); ``num_cpus`` (0.5) is its CPU share;
    ``max_ongoing_requests`` stays above the batch size; ``stuck_after_s`` (3 × ``request_timeout_s``, at
    least 30 s) is when a running batch fails the health check; ``refresh_s`` (30 s) how often a newly
    promoted champion is looked for."""
    batch = int(args.get("max_batch_size", DEFAULT_MAX_BATCH))
    user_config: dict[str, Any] = {
        "max_batch_size": batch,
        "batch_wait_timeout_s": float(args.get("batch_wait_timeout_s", DEFAULT_BATCH_WAIT_S)),
        "versions": args.get("versions") or {},
    }
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


class Resident:
    """What an ``on_demand`` server's ``@serve.multiplexed`` loader returns for model ``key``: Serve calls
    ``__del__`` on what it evicts, and this unloads the model from the server (once)."""

    def __init__(self, server: ModelServer, key: str):
        self.server, self.key, self._resident = server, key, True

    def __del__(self) -> None:
        if self._resident:
            self._resident = False
            self.server.unload(self.key)
