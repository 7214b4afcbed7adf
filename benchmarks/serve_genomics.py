"""Closed-loop HTTP load on ``POST /genomics/classify`` (8 UCI-length sequences per request) and
``POST /genomics/embed`` (one 1 kb sequence) through Ray Serve, batching off and on, at concurrency 1, 8
and 32 (method: ``benchmarks/serving.py``).

    python -m benchmarks.serve_genomics [--write]   # needs the registered models (make up trains them)
"""

from __future__ import annotations

import argparse
import logging
import sys

import numpy as np

from benchmarks.serving import sweep, table

_rng = np.random.default_rng(0)
CLASSIFY = {"sequences": ["".join(_rng.choice(list("ACGT"), size=60)) for _ in range(8)], "task": "splice"}
EMBED = {"sequences": ["".join(_rng.choice(list("ACGT"), size=1000))]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--window-s", type=float, default=15.0)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from benchmarks.common import provenance
    from services.genomics.app import build_app

    method = (
        "Closed loop after warm-up; one replica (0.5 CPU, 1 torch thread); the load generator runs on the same 2 "
        "cores. Models: the `make up` champions (HyenaDNA tiny-1k). Rerun: `python -m benchmarks.serve_genomics "
        "--write` (with `make up` running)."
    )
    sections = ["## Serving: /genomics through Ray Serve (CPU)", "", provenance(), method, ""]
    for path, body, what in (("/classify", CLASSIFY, "8 sequences of 60 nt, splice task"),
                             ("/embed", EMBED, "one 1,000-nt sequence, language model")):  # fmt: skip
        rows = sweep("genomics-bench", build_app, {}, path, body, args.concurrency, args.warmup_s, args.window_s)
        sections += [f"POST /genomics{path} ({what}):", "", table(rows), ""]
    text = "\n".join(sections)
    print(text)
    if args.write:
        from benchmarks.common import write_section

        write_section("serve_genomics", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
