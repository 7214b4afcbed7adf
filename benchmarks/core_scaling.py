"""Forward time and peak memory of the core's sequence mechanisms against sequence length, on CPU.

Each mechanism runs as a causal layer of width 512 (8 heads × 64, batch 1) — softmax, sigmoid and
lightning attention through ``shared_attention.build``, Hyena as ``HyenaOperator(512)`` — from 1k
tokens up to 64k, or until one forward pass would exceed the time budget or the machine's memory.
Every (mechanism, length) point runs in a fresh subprocess, so its peak resident memory is its own:
we report the peak RSS of the forward pass above the RSS before it (inputs and weights excluded).
Time is the median of the timed repeats after one warm-up pass.

The fitted exponent is the least-squares slope of log(time) against log(length) over lengths ≥ 4k,
where fixed per-call costs no longer dominate: ~2 means quadratic, ~1 linear.

    python -m benchmarks.core_scaling            # full run, prints the table
    python -m benchmarks.core_scaling --write    # ... and writes it to benchmarks/RESULTS.md
    python -m benchmarks.core_scaling --quick    # 1k-8k, a minute or two
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import subprocess
import sys
import time

MECHANISMS = ("softmax", "sigmoid", "lightning", "hyena")
WIDTH, HEADS, BATCH = 512, 8, 1
FIT_FROM = 4096

log = logging.getLogger("benchmarks.core_scaling")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(mechanism: str, length: int, threads: int) -> dict:
    """One point, in this process: median forward seconds and peak extra RSS in MiB."""
    import torch

    import shared_attention as sa

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if mechanism == "hyena":
        layer = sa.HyenaOperator(WIDTH, l_max=length)
    else:
        layer = sa.build(mechanism, dim=WIDTH, num_heads=HEADS, causal=True)
    layer.eval()
    x = torch.randn(BATCH, length, WIDTH)
    with torch.inference_mode():
        layer(x[:, :16])  # imports and lazy initialisation out of the way
        base = _rss_bytes()
        start = time.perf_counter()
        layer(x)
        warmup = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
        repeats = 5 if warmup < 0.5 else 3 if warmup < 5 else 1
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            layer(x)
            times.append(time.perf_counter() - start)
    times.sort()
    return {"seconds": times[len(times) // 2], "peak_mib": max(0, peak) / 2**20, "repeats": repeats}


def run_point(mechanism: str, length: int, threads: int, timeout_s: float) -> dict:
    """``measure`` in a fresh interpreter; ``{"error": ...}`` when it dies or times out."""
    cmd = [sys.executable, "-m", "benchmarks.core_scaling", "--worker", mechanism, str(length), str(threads)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout_s:.0f} s"}
    if done.returncode != 0:
        killed = done.returncode in (-9, 137)
        return {"error": "out of memory" if killed else done.stderr.strip().splitlines()[-1][:120]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def fit_exponent(points: dict[int, dict], *, from_length: int = FIT_FROM, last: int | None = None) -> float | None:
    """Least-squares slope of log(seconds) on log(length) over lengths >= ``from_length`` (or only the
    ``last`` measured lengths); None with fewer than two points."""
    measured = [(n, p["seconds"]) for n, p in sorted(points.items()) if n >= from_length and "seconds" in p]
    if last is not None:
        measured = measured[-last:]
    xs = [math.log(n) for n, _ in measured]
    ys = [math.log(t) for _, t in measured]
    if len(xs) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def available_mib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


def sweep(lengths: list[int], budget_s: float, threads: int) -> dict[str, dict[int, dict]]:
    from pipelines.common.progress import Progress

    results: dict[str, dict[int, dict]] = {m: {} for m in MECHANISMS}
    progress = Progress(len(MECHANISMS) * len(lengths), "core_scaling", every_s=0)
    for mechanism in MECHANISMS:
        stopped = ""
        for length in lengths:
            done = [(n, p) for n, p in sorted(results[mechanism].items()) if "seconds" in p]
            if not stopped and len(done) >= 2:
                (n0, p0), (n1, p1) = done[-2], done[-1]
                growth = math.log(length / n1) / math.log(n1 / n0)
                predicted_s = p1["seconds"] * (p1["seconds"] / p0["seconds"]) ** growth
                predicted_mib = p1["peak_mib"] * max(1.0, (p1["peak_mib"] / max(p0["peak_mib"], 1)) ** growth)
                if predicted_s > budget_s:
                    stopped = f"skipped: ~{predicted_s:.0f} s predicted > {budget_s:.0f} s budget"
                elif predicted_mib > 0.7 * available_mib():
                    stopped = f"skipped: ~{predicted_mib:.0f} MiB predicted > 70% of free memory"
            point = {"error": stopped} if stopped else run_point(mechanism, length, threads, 4 * budget_s)
            if "error" in point:
                stopped = stopped or point["error"]
            results[mechanism][length] = point
            shown = f"{point['seconds'] * 1e3:.1f} ms" if "seconds" in point else point["error"]
            progress.update(point=f"{mechanism}@{length}", result=shown)
    return results


def table(results: dict[str, dict[int, dict]], lengths: list[int]) -> str:
    head = "| tokens | " + " | ".join(f"{m} ms | {m} MiB" for m in MECHANISMS) + " |"
    rule = "|---:|" + "---:|---:|" * len(MECHANISMS)
    rows = [head, rule]
    for n in lengths:
        cells = []
        for m in MECHANISMS:
            p = results[m].get(n, {})
            if "seconds" in p:
                cells += [f"{p['seconds'] * 1e3:,.1f}", f"{p['peak_mib']:,.0f}"]
            else:
                cells += ["—", "—"]
        rows.append(f"| {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def report(results: dict[str, dict[int, dict]], lengths: list[int], threads: int) -> str:
    from benchmarks.common import provenance

    lines = [
        "## Core scaling: forward time and peak memory against sequence length (CPU)",
        "",
        provenance(),
        f"Causal layers, width {WIDTH} ({HEADS} heads × {WIDTH // HEADS}), batch {BATCH}, {threads} threads; "
        "time = median forward pass, memory = peak RSS of the pass above the RSS before it. "
        "Rerun: `make bench` (or `python -m benchmarks.core_scaling --write`).",
        "",
        table(results, lengths),
        "",
        f"Fitted exponent of time against length (least squares on log-log, lengths ≥ {FIT_FROM:,}):",
        "",
    ]
    for m in MECHANISMS:
        k = fit_exponent(results[m])
        tail = fit_exponent(results[m], last=3)
        measured = sorted(n for n, p in results[m].items() if "seconds" in p)
        notes = sorted({p["error"] for p in results[m].values() if "error" in p})
        span = f"{measured[0]:,}–{measured[-1]:,}" if measured else "none"
        fitted = f"**{k:.2f}**" if k is not None else "n/a"
        tail_text = f", {tail:.2f} over the three longest" if tail is not None and len(measured) >= 3 else ""
        lines.append(f"- {m}: {fitted}{tail_text} (measured {span} tokens{'; ' + '; '.join(notes) if notes else ''})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1k-8k only (about a minute)")
    parser.add_argument("--max-len", type=int, default=65536)
    parser.add_argument("--budget-s", type=float, default=60.0, help="skip points predicted slower than this")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--write", action="store_true", help="write the table into benchmarks/RESULTS.md")
    parser.add_argument("--worker", nargs=3, metavar=("MECHANISM", "LENGTH", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        mechanism, length, threads = args.worker[0], int(args.worker[1]), int(args.worker[2])
        print(json.dumps(measure(mechanism, length, threads)))
        return 0

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    top = 8192 if args.quick else args.max_len
    lengths = [n for n in (1024 * 2**i for i in range(8)) if n <= top]
    results = sweep(lengths, args.budget_s, args.threads)
    text = report(results, lengths, args.threads)
    print(text)
    if args.write:
        from benchmarks.common import write_section

        write_section("core_scaling", text)
        log.info("wrote the core_scaling section of benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
