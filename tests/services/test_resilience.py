"""A model replica that dies or gets stuck costs no request: the ingress retries within the request's
timeout (503 with Retry-After only when nothing answers in time), and a replica whose batch runs past
its limit fails its health check and is replaced. Real Serve, real HTTP, a real kill."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures as cf
import threading
import time

import httpx
import numpy as np
import pytest
import ray
from ray import serve

from services.pointer.app import build_app

ROUTE = "/pointer-resilience"


@pytest.fixture(scope="module")
def client(ray_cluster, trained_tsp, trained_hull):
    app = build_app({"models": {"delaunay": None}, "request_timeout_s": 30})
    serve.run(app, name="pointer-resilience", route_prefix=ROUTE)
    with httpx.Client(base_url=ray_cluster["http"] + ROUTE, timeout=60) as c:
        yield c
    serve.delete("pointer-resilience")


def _replica_names(app: str, deployment: str) -> list[str]:
    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)]


def test_killing_the_model_replica_under_load_fails_no_request(client):
    body = {"points": np.random.default_rng(0).random((12, 2)).tolist()}
    assert client.post("/tsp", json=body).status_code == 200
    (victim,) = _replica_names("pointer-resilience", "PointerSolver")
    statuses: collections.Counter[int] = collections.Counter()
    bad: list[str] = []
    finished: list[float] = []  # when each request came back
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            r = client.post("/tsp", json=body)
            statuses[r.status_code] += 1
            finished.append(time.monotonic())
            if r.status_code != 200:
                error = r.json().get("error", {})
                shaped = r.status_code == 503 and error.get("code") == "unavailable"
                if not (shaped and r.headers.get("retry-after") and error.get("retry_after_s")):
                    bad.append(f"{r.status_code} {r.text[:200]}")

    with cf.ThreadPoolExecutor(16) as pool:
        workers = [pool.submit(load) for _ in range(16)]
        time.sleep(3)
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        killed = time.monotonic()
        while time.monotonic() - killed < 60 and _replica_names("pointer-resilience", "PointerSolver") in (
            [],
            [victim],
        ):
            time.sleep(0.5)
        # The new replica serves under the same load: wait for as many answers as there are clients (a
        # count, not a time, so a slow machine only makes the test longer).
        replaced = time.monotonic()
        while time.monotonic() - replaced < 120 and sum(t > replaced for t in finished) < 32:
            time.sleep(0.5)
        stop.set()
        for w in workers:
            w.result()
    total = sum(statuses.values())
    print(f"replica kill under 16 clients: {dict(statuses)} of {total} requests")
    assert not bad, bad[:3]  # nothing outside the 503 + Retry-After error shape
    assert statuses[200] == total, dict(statuses)  # the goal: every request answered
    assert sum(t > killed for t in finished) >= 32  # the kill happened under load, and the load went on


def test_a_stuck_replica_fails_its_health_check_and_is_replaced(ray_cluster):
    from services.common.serving import StuckWatch

    @serve.deployment(health_check_period_s=1, health_check_timeout_s=5, ray_actor_options={"num_cpus": 0.1})
    class Sleeper(StuckWatch):
        stuck_after_s = 1.0

        def check_health(self) -> None:
            self.check_stuck()

        async def block(self) -> None:
            await asyncio.to_thread(self._block)

        def _block(self) -> None:
            with self.busy():
                time.sleep(120)  # work that ignores every deadline

        def pid(self) -> int:
            import os

            return os.getpid()

    handle = serve.run(Sleeper.bind(), name="stuck-test", route_prefix=None)
    try:
        first = handle.pid.remote().result()
        handle.block.remote()
        start = time.monotonic()
        pid = first
        while pid == first and time.monotonic() - start < 90:
            time.sleep(1)
            try:
                pid = handle.pid.remote().result(timeout_s=10)
            except Exception:  # the replica is being replaced
                continue
        print(f"stuck replica replaced after {time.monotonic() - start:.1f} s")
        assert pid != first, "the stuck replica kept its place"
    finally:
        serve.delete("stuck-test")
