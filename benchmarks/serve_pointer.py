"""Closed-loop HTTP load on ``POST /pointer/tsp`` (50 uniform points, greedy decoding) through Ray Serve.

For batching off (``max_batch_size`` 1) and on (16, 5 ms wait) the pointer app is deployed under its
own route, then ``concurrency`` clients (1, 8, 32) each send their next request as soon as the last
answer arrives, for a fixed window after a warm-up. Reported: throughput, p50/p99 latency seen by the
client, and the batch sizes the model deployment reported in its answers. The load generator shares
the machine (2 cores here) with the proxy and the replicas, so compare rows of one run, not machines.

    python -m benchmarks.serve_pointer             # needs the TSP model registered (make up does it)
    python -m benchmarks.serve_pointer --write     # ... and write benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import os
import sys
import time

import numpy as np

log = logging.getLogger("benchmarks.serve_pointer")

SETTINGS = {"off": {"max_batch_size": 1}, "on": {"max_batch_size": 16, "batch_wait_timeout_s": 0.005}}


async def closed_loop(url: str, body: dict, concurrency: int, warmup_s: float, window_s: float) -> dict:
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
            batch_sizes[response.json()["batch_size"]] += 1

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


def run(concurrencies: list[int], warmup_s: float, window_s: float, points: int) -> list[dict]:
    import ray
    from ray import serve

    from services.pointer.app import build_app

    if not ray.is_initialized():
        if _cluster_running():  # the `make up` cluster: token auth is on for local clusters
            os.environ.setdefault("RAY_AUTH_MODE", "token")
            ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=False)
        else:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = int(os.environ.get("SERVE_PORT", 8000))
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    base = f"http://127.0.0.1:{port}"
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    body = {"points": np.random.default_rng(0).random((points, 2)).tolist(), "decode": "greedy"}
    rows = []
    for setting, batch in SETTINGS.items():
        name = f"pointer-bench-batch-{setting}"
        args = {"models": {"convex_hull": None, "delaunay": None}, "tracking_uri": tracking_uri, **batch}
        serve.run(build_app(args), name=name, route_prefix=f"/{name}")
        url = f"{base}/{name}/tsp"
        for concurrency in concurrencies:
            stats = asyncio.run(closed_loop(url, body, concurrency, warmup_s, window_s))
            rows.append({"batching": setting, "concurrency": concurrency, **stats})
            log.info("batching %s, concurrency %d: %s", setting, concurrency, stats)
        serve.delete(name)
    return rows


def _cluster_running() -> bool:
    return os.path.exists("/tmp/ray/ray_current_cluster") or bool(os.environ.get("RAY_ADDRESS"))


def report(rows: list[dict], points: int, window_s: float) -> str:
    from benchmarks.common import provenance

    lines = [
        "## Serving: POST /pointer/tsp through Ray Serve (CPU)",
        "",
        provenance(),
        f"{points} uniform points, greedy decoding with the registered `pointer-tsp-attention` champion; "
        f"closed loop, {window_s:.0f} s windows after warm-up; one replica (0.5 CPU, 1 torch thread); "
        "the load generator runs on the same 2 cores. Rerun: `python -m benchmarks.serve_pointer --write` "
        "(with `make up` running).",
        "",
        "| batching | concurrency | req/s | p50 ms | p99 ms | mean batch | max batch | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batching']} | {r['concurrency']} | {r['throughput']:.1f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['mean_batch']:.2f} | {r['max_batch']} | {r['errors']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--window-s", type=float, default=15.0)
    parser.add_argument("--points", type=int, default=50)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    rows = run(args.concurrency, args.warmup_s, args.window_s, args.points)
    text = report(rows, args.points, args.window_s)
    print(text)
    if args.write:
        from benchmarks.common import write_section

        write_section("serve_pointer", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
