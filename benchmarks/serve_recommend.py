"""Closed-loop HTTP load on ``POST /recommend/next`` and ``POST /recommend/rank`` through Ray Serve,
batching off and on, at concurrency 1, 8 and 32 (method: ``benchmarks/serving.py``).

    python -m benchmarks.serve_recommend [--write]   # needs the registered models (make up trains them)
"""

from __future__ import annotations

import sys

from benchmarks import serving

NEXT = {"history": ["1", "2", "3", "4", "5"], "k": 10}
RANK = {
    "features": {f"f{i}": str(i + 1) for i in range(8)},
    "candidates": [{"d0": (j % 7) / 7.0, "d1": (j % 5) / 5.0, "f7": str(j % 60)} for j in range(50)],
}


def main(argv: list[str] | None = None) -> int:
    from services.recommendation.app import build_app

    return serving.main(
        argv,
        doc=__doc__,
        section="serve_recommend",
        title="## Serving: /recommend through Ray Serve (CPU)",
        name="recommend-bench",
        prefix="/recommend",
        build_app=build_app,
        endpoints=lambda args: [
            ("/next", NEXT, "5-item history, top 10 of all items"),
            ("/rank", RANK, "50 candidates per request"),
        ],
        method=lambda args: (
            "Models: the registered champions. "
            "Rerun: `python -m benchmarks.serve_recommend --write` (with `make up` running)."
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
