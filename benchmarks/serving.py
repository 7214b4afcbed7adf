"""Closed-loop HTTP load against a Serve app, shared by the domains' serving benchmarks.

For batching off (``max_batch_size`` 1) and on (16, 5 ms wait) the app is deployed under a route of
its own, then ``concurrency`` clients each send their next request as soon as the last answer arrives,
for a fixed window after a warm-up. Reported: throughput, p50/p99 latency seen by the clients, and
the batch sizes the model deployment reported in its answers. The load generator shares the machine
(2 cores here) with the proxy and the replicas: compare rows of one run, not machines.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger("benchmarks.serving")

SETTINGS = {"off": {"max_batch_size": 1}, "on": {"max_batch_size": 16, "batch_wait_timeout_s": 0.005}}


async def closed_loop(url: str, body: dict, concurrency: int, warmup_s: float, window_s: float) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    batch_sizes: collections.Counter[int] = collections.Counter()
    errors = 0
    start = time.perf_counter()
    measure_from, stop_at = start + warmup_s, start + warmup_s + window_s

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while True:
            sent = time.perf_counter()
            if sent >= stop_at:
                return
            response = await http.post(url, json=body)
            done = time.perf_counter()
            if sent < measure_from:
                continue
            if response.status_code != 200:
                errors += 1
                continue
            latencies.append(done - sent)
            batch_sizes[response.json().get("batch_size", 1)] += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    lat = np.array(latencies) * 1e3
    total = sum(batch_sizes.values())
    return {
        "requests": len(latencies),
        "errors": errors,
        "throughput": len(latencies) / window_s,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "mean_batch": sum(k * v for k, v in batch_sizes.items()) / max(1, total),
        "max_batch": max(batch_sizes) if batch_sizes else 0,
    }


def connect() -> str:
    """Join the running cluster (``make up``) or start a local one; start Serve; return its base URL."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        if os.path.exists("/tmp/ray/ray_current_cluster") or os.environ.get("RAY_ADDRESS"):
            os.environ.setdefault("RAY_AUTH_MODE", "token")  # token auth is on for local clusters
            ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=False)
        else:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = int(os.environ.get("SERVE_PORT", 8000))
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return f"http://127.0.0.1:{port}"


def sweep(
    name: str,
    build_app: Callable[[dict], Any],
    args: dict,
    path: str,
    body: dict,
    concurrencies: list[int],
    warmup_s: float,
    window_s: float,
) -> list[dict[str, Any]]:
    """Deploy ``build_app(args + batching setting)`` under ``/<name>-batch-<on|off>`` and load ``path``."""
    from ray import serve

    base = connect()
    args = {"tracking_uri": os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"), **args}
    rows = []
    for setting, batch in SETTINGS.items():
        app_name = f"{name}-batch-{setting}"
        serve.run(build_app({**args, **batch}), name=app_name, route_prefix=f"/{app_name}")
        for concurrency in concurrencies:
            stats = asyncio.run(closed_loop(f"{base}/{app_name}{path}", body, concurrency, warmup_s, window_s))
            rows.append({"batching": setting, "concurrency": concurrency, **stats})
            log.info("%s batching %s, concurrency %d: %s", name, setting, concurrency, stats)
        serve.delete(app_name)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| batching | concurrency | req/s | p50 ms | p99 ms | mean batch | max batch | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batching']} | {r['concurrency']} | {r['throughput']:.1f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['mean_batch']:.2f} | {r['max_batch']} | {r['errors']} |"
        )
    return "\n".join(lines)


Endpoint = tuple[str, dict, str]  # (path under the app, JSON body, what the body is, for the table's title)


def main(
    argv: list[str] | None,
    *,
    doc: str,
    section: str,
    title: str,
    name: str,
    prefix: str,
    build_app: Callable[[dict], Any],
    endpoints: Callable[[argparse.Namespace], list[Endpoint]],
    method: Callable[[argparse.Namespace], str],
    app_args: dict | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """The command line every ``benchmarks/serve_<domain>.py`` shares: deploy ``build_app`` under
    ``/<name>-batch-<off|on>``, sweep each endpoint, print the tables under ``title`` and, with
    ``--write``, replace ``section`` of ``benchmarks/RESULTS.md``."""
    from benchmarks.common import provenance, write_section

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--window-s", type=float, default=15.0)
    parser.add_argument("--write", action="store_true")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    common = (
        f"Closed loop, {args.window_s:.0f} s windows after a {args.warmup_s:.0f} s warm-up; one model replica "
        "(0.5 CPU share, 1 torch thread); the load generator runs on the same 2 cores. "
    )
    sections = [title, "", provenance(), common + method(args), ""]
    for path, body, what in endpoints(args):
        rows = sweep(name, build_app, app_args or {}, path, body, args.concurrency, args.warmup_s, args.window_s)
        sections += [f"POST {prefix}{path} ({what}):", "", table(rows), ""]
    text = "\n".join(sections)
    print(text)
    if args.write:
        write_section(section, text)
    return 0
