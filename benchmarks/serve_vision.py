"""Closed-loop HTTP load on ``POST /vision/classify`` (a 28×28 PNG as base64 JSON, the VAN model) through
Ray Serve, batching off and on, at concurrency 1, 8 and 32 (method: ``benchmarks/serving.py``).

    python -m benchmarks.serve_vision [--write]   # needs vision-van-digits registered (make up trains it)
"""

from __future__ import annotations

import argparse
import base64
import io
import logging
import sys

import numpy as np
from PIL import Image

from benchmarks.serving import sweep, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--window-s", type=float, default=15.0)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from benchmarks.common import provenance
    from services.vision.app import build_app

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)).save(buffer, format="PNG")
    body = {"image_base64": base64.b64encode(buffer.getvalue()).decode(), "model": "van", "top_k": 3}
    rows = sweep("vision-bench", build_app, {"models": {"biformer": None, "agent": None}}, "/classify", body,
                 args.concurrency, args.warmup_s, args.window_s)  # fmt: skip
    text = "\n".join([
        "## Serving: POST /vision/classify through Ray Serve (CPU)",
        "",
        provenance(),
        "A 28×28 PNG (base64 JSON), VAN small-input model; closed loop after warm-up; one replica (0.5 CPU, "
        "1 torch thread); the load generator runs on the same 2 cores. Rerun: `python -m benchmarks.serve_vision "
        "--write` (with `make up` running).",
        "",
        table(rows),
        "",
    ])  # fmt: skip
    print(text)
    if args.write:
        from benchmarks.common import write_section

        write_section("serve_vision", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
