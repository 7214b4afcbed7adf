"""Closed-loop HTTP load on ``POST /recommend/next`` and ``POST /recommend/rank`` through Ray Serve,
batching off and on, at concurrency 1, 8 and 32 (method: ``benchmarks/serving.py``).

    python -m benchmarks.serve_recommend [--write]   # needs the registered models (make up trains them)
"""

from __future__ import annotations

import argparse
import logging
import sys

from benchmarks.serving import sweep, table

NEXT = {"history": ["1", "2", "3", "4", "5"], "k": 10}
RANK = {
    "features": {f"f{i}": str(i + 1) for i in range(8)},
    "candidates": [{"d0": (j % 7) / 7.0, "d1": (j % 5) / 5.0, "f7": str(j % 60)} for j in range(50)],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--window-s", type=float, default=15.0)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from benchmarks.common import provenance
    from services.recommendation.app import build_app

    method = (
        "Closed loop after warm-up; one replica (0.5 CPU, 1 torch thread); the load generator runs on the same 2 "
        "cores. Rerun: `python -m benchmarks.serve_recommend --write` (with `make up` running)."
    )
    sections = ["## Serving: /recommend through Ray Serve (CPU)", "", provenance(), method, ""]
    for path, body, what in (("/next", NEXT, "5-item history, top 10 of all items"),
                             ("/rank", RANK, "50 candidates per request")):  # fmt: skip
        rows = sweep("recommend-bench", build_app, {}, path, body, args.concurrency, args.warmup_s, args.window_s)
        sections += [f"POST /recommend{path} ({what}):", "", table(rows), ""]
    text = "\n".join(sections)
    print(text)
    if args.write:
        from benchmarks.common import write_section

        write_section("serve_recommend", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
