"""The seed and the report line of the tests that train a model and assert that it learned.

Each such test is marked ``learning``, seeds its training with :data:`SEED` and calls :func:`record`
with its measured figure and threshold. ``make learning-spread`` reruns them at seeds 0, 1, 2 with 1
and 2 torch threads and tabulates the ``LEARNING`` lines, which is how each threshold's margin (stated
in the test's comment) was set. ``ATTENTION_SUITE_TEST_SEED`` picks the seed (default 0).
"""

from __future__ import annotations

import os

SEED = int(os.environ.get("ATTENTION_SUITE_TEST_SEED", "0"))


def record(test: str, value: float, threshold: float, higher_is_better: bool = True) -> None:
    """Print the figure and its threshold (visible with ``pytest -s``; the spread script reads it)."""
    margin = value - threshold if higher_is_better else threshold - value
    print(f"\nLEARNING {test} value={value:.4f} threshold={threshold:.4f} margin={margin:+.4f}")


def spread(seeds: tuple[int, ...] = (0, 1, 2), threads: tuple[int, ...] = (1, 2)) -> str:
    """Run the learning tests at every seed and thread count; a markdown table of each figure's range."""
    import re
    import subprocess
    import sys

    runs: dict[str, list[tuple[float, float, float]]] = {}
    for seed in seeds:
        for n in threads:
            env = {**os.environ, "ATTENTION_SUITE_TEST_SEED": str(seed), "ATTENTION_SUITE_TEST_THREADS": str(n)}
            cmd = [sys.executable, "-m", "pytest", "-m", "learning", "-s", "-q", "-p", "no:cacheprovider"]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            print(f"seed {seed}, {n} thread(s): exit {done.returncode}", flush=True)
            for name, value, threshold, margin in re.findall(
                r"LEARNING (.+?) value=(\S+) threshold=(\S+) margin=(\S+)", done.stdout
            ):
                runs.setdefault(name, []).append((float(value), float(threshold), float(margin)))
    lines = ["| test figure | runs | min | max | threshold | smallest margin |", "|---|---|---|---|---|---|"]
    for name, values in sorted(runs.items()):
        v, smallest = [x[0] for x in values], min(x[2] for x in values)
        lines.append(f"| {name} | {len(v)} | {min(v):.4f} | {max(v):.4f} | {values[0][1]:.4f} | {smallest:+.4f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(spread())
