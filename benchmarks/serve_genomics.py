"""Closed-loop HTTP load on ``POST /genomics/classify`` (8 UCI-length sequences per request) and
``POST /genomics/embed`` (one 1 kb sequence) through Ray Serve, batching off and on, at concurrency 1, 8
and 32 (method: ``benchmarks/serving.py``).

    python -m benchmarks.serve_genomics [--write]   # needs the registered models (make up trains them)
"""

from __future__ import annotations

import sys

import numpy as np

from benchmarks import serving

_rng = np.random.default_rng(0)
CLASSIFY = {"sequences": ["".join(_rng.choice(list("ACGT"), size=60)) for _ in range(8)], "task": "splice"}
EMBED = {"sequences": ["".join(_rng.choice(list("ACGT"), size=1000))]}


def main(argv: list[str] | None = None) -> int:
    from services.genomics.app import build_app

    return serving.main(
        argv,
        doc=__doc__,
        section="serve_genomics",
        title="## Serving: /genomics through Ray Serve (CPU)",
        name="genomics-bench",
        prefix="/genomics",
        build_app=build_app,
        endpoints=lambda args: [
            ("/classify", CLASSIFY, "8 sequences of 60 nt, splice task"),
            ("/embed", EMBED, "one 1,000-nt sequence, language model"),
        ],
        method=lambda args: (
            "Models: the `make up` champions (HyenaDNA tiny-1k). "
            "Rerun: `python -m benchmarks.serve_genomics --write` (with `make up` running)."
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
