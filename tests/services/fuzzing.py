"""Runs ``deploy/fuzz.sh`` (schemathesis with the suite's checks) against one app of the test cluster,
seeded, with a budget that fits CI; ``make fuzz`` runs the same script for minutes per app."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "fuzz.sh"
EXAMPLES = 12  # per operation, for both the valid and the invalid generation modes


def fuzz(
    client: httpx.Client, *, examples: int = EXAMPLES, max_time_s: int = 30, exclude: tuple[str, ...] = ()
) -> None:
    """Fuzz the app behind ``client``; ``exclude`` names paths this test deployment does not serve."""
    url = str(client.base_url).rstrip("/")
    base, prefix = url.rsplit("/", 1)
    env = {
        **os.environ,
        "FUZZ_EXAMPLES": str(examples),
        "FUZZ_SEED": "1",
        "FUZZ_MAX_TIME": str(max_time_s),
        "FUZZ_ARGS": " ".join(f"--exclude-path {path}" for path in exclude),
    }
    done = subprocess.run([str(SCRIPT), base, f"/{prefix}"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
