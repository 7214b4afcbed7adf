"""Closed-loop HTTP load on ``POST /pointer/tsp`` (50 uniform points, greedy decoding) through Ray Serve,
batching off and on, at concurrency 1, 8 and 32 (method: ``benchmarks/serving.py``).

    python -m benchmarks.serve_pointer             # needs the TSP model registered (make up does it)
    python -m benchmarks.serve_pointer --write     # ... and write benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from benchmarks import serving


def _tsp(args: argparse.Namespace) -> list[serving.Endpoint]:
    body = {"points": np.random.default_rng(0).random((args.points, 2)).tolist(), "decode": "greedy"}
    return [("/tsp", body, f"{args.points} uniform points, greedy decoding")]


def main(argv: list[str] | None = None) -> int:
    from services.pointer.app import build_app

    return serving.main(
        argv,
        doc=__doc__,
        section="serve_pointer",
        title="## Serving: POST /pointer/tsp through Ray Serve (CPU)",
        name="pointer-bench",
        prefix="/pointer",
        build_app=build_app,
        app_args={"models": {"convex_hull": None, "delaunay": None}},
        endpoints=_tsp,
        method=lambda args: (
            "Model: the registered `pointer-tsp-attention` champion. "
            "Rerun: `python -m benchmarks.serve_pointer --write` (with `make up` running)."
        ),
        add_arguments=lambda parser: parser.add_argument("--points", type=int, default=50),
    )


if __name__ == "__main__":
    sys.exit(main())
