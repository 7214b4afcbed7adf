"""Closed-loop HTTP load on ``POST /vision/classify`` (a 28×28 PNG as base64 JSON, the VAN model) through
Ray Serve, batching off and on, at concurrency 1, 8 and 32 (method: ``benchmarks/serving.py``).

    python -m benchmarks.serve_vision [--write]   # needs vision-van-digits registered (make up trains it)
"""

from __future__ import annotations

import base64
import io
import sys

import numpy as np
from PIL import Image

from benchmarks import serving


def _digit_png() -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def main(argv: list[str] | None = None) -> int:
    from services.vision.app import build_app

    body = {"image_base64": _digit_png(), "model": "van", "top_k": 3}
    return serving.main(
        argv,
        doc=__doc__,
        section="serve_vision",
        title="## Serving: POST /vision/classify through Ray Serve (CPU)",
        name="vision-bench",
        prefix="/vision",
        build_app=build_app,
        app_args={"models": {"biformer": None, "agent": None}},
        endpoints=lambda args: [("/classify", body, "a 28×28 PNG as base64 JSON, VAN small-input model")],
        method=lambda args: "Rerun: `python -m benchmarks.serve_vision --write` (with `make up` running).",
    )


if __name__ == "__main__":
    sys.exit(main())
