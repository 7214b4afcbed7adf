"""Closed-loop HTTP load on ``POST /pointer/tsp`` (50 uniform points, greedy decoding) through Ray Serve,
batching off and on, at concurrency 1, 8 and 32 (method: ``benchmarks/serving.py``).

    python -m benchmarks.serve_pointer             # needs the TSP model registered (make up does it)
    python -m benchmarks.serve_pointer --write     # ... and write benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import logging
import sys

import numpy as np

from benchmarks.serving import sweep, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--window-s", type=float, default=15.0)
    parser.add_argument("--points", type=int, default=50)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from benchmarks.common import provenance
    from services.pointer.app import build_app

    body = {"points": np.random.default_rng(0).random((args.points, 2)).tolist(), "decode": "greedy"}
    rows = sweep("pointer-bench", build_app, {"models": {"convex_hull": None, "delaunay": None}}, "/tsp", body,
                 args.concurrency, args.warmup_s, args.window_s)  # fmt: skip
    text = "\n".join([
        "## Serving: POST /pointer/tsp through Ray Serve (CPU)",
        "",
        provenance(),
        f"{args.points} uniform points, greedy decoding with the registered `pointer-tsp-attention` champion; "
        f"closed loop, {args.window_s:.0f} s windows after warm-up; one replica (0.5 CPU, 1 torch thread); the "
        "load generator runs on the same 2 cores. Rerun: `python -m benchmarks.serve_pointer --write` "
        "(with `make up` running).",
        "",
        table(rows),
        "",
    ])  # fmt: skip
    print(text)
    if args.write:
        from benchmarks.common import write_section

        write_section("serve_pointer", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
