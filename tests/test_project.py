"""The project's promises outside the code: the README's example runs, CI calls the README's test
command, and the layout matches the architecture."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_example_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "README has no python example"
    done = subprocess.run([sys.executable, "-c", blocks[0]], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "lightning" in done.stdout


def test_readme_opens_with_the_two_commands():
    head = (ROOT / "README.md").read_text()[:1200]
    assert "make up" in head and "make test" in head


def test_ci_runs_make_test_only():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-1].strip() == "make test"
    assert "set -euo pipefail" in ci


def test_layout_matches_architecture():
    for path in (
        "pyproject.toml",
        "Makefile",
        "README.md",
        "shared_attention",
        "kernels",
        "benchmarks",
        "tests",
    ):
        assert (ROOT / path).exists(), path
